// The shim's error convention (see dist.cpp): a message copied into malloc'd memory, which
// Rust takes and frees with `peirce_dist_free_error`. NULL when out of memory.
#pragma once

#include <cstdlib>
#include <cstring>

inline char* peirce_message(const char* text) {
  char* message = static_cast<char*>(std::malloc(std::strlen(text) + 1));
  if (message != nullptr) {
    std::strcpy(message, text);
  }
  return message;
}
