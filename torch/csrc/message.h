// The shims' error convention (every file in csrc/): an entry point returns NULL on success,
// or a message copied into malloc'd memory, which Rust takes and frees with
// `peirce_dist_free_error`. Nothing C++ ever unwinds into Rust.
#pragma once

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include <c10/util/Exception.h>

// Returned when even the message cannot be allocated: an error must never read as NULL
// (success). `peirce_dist_free_error` knows not to free it.
inline char peirce_no_memory[] = "out of memory while reporting an error";

inline char* peirce_message(const std::string& text) {
  char* message = static_cast<char*>(std::malloc(text.size() + 1));
  if (message == nullptr) {
    return peirce_no_memory;
  }
  std::memcpy(message, text.data(), text.size());
  message[text.size()] = '\0';
  return message;
}

// Runs `body`, returning NULL, or any C++ exception it throws as a message (`unknown` for
// one that is not a std::exception). c10 errors give their message without the C++
// backtrace, which says nothing to a peirce user.
template <typename F>
char* peirce_guarded(F&& body, const char* unknown = "unknown C++ exception") noexcept {
  try {
    body();
    return nullptr;
  } catch (const c10::Error& error) {
    return peirce_message(error.what_without_backtrace());
  } catch (const std::exception& error) {
    return peirce_message(error.what());
  } catch (...) {
    return peirce_message(unknown);
  }
}
