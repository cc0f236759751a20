// The shim's error convention (see dist.cpp): a message copied into malloc'd memory, which
// Rust takes and frees with `peirce_dist_free_error`. NULL when out of memory.
#pragma once

#include <cstdlib>
#include <cstring>
#include <exception>

inline char* peirce_message(const char* text) {
  char* message = static_cast<char*>(std::malloc(std::strlen(text) + 1));
  if (message != nullptr) {
    std::strcpy(message, text);
  }
  return message;
}

// Runs `body`, returning NULL, or any C++ exception it throws as a message (`unknown` for
// one that is not a std::exception).
template <typename F>
char* peirce_guarded(F&& body, const char* unknown) {
  try {
    body();
    return nullptr;
  } catch (const std::exception& error) {
    return peirce_message(error.what());
  } catch (...) {
    return peirce_message(unknown);
  }
}
