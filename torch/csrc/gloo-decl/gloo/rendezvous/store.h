// peirce: declaration stand-in for Gloo's <gloo/rendezvous/store.h> (see ../../README.md).
//
// ProcessGroupGloo::GlooStore (defined inline in ProcessGroupGloo.hpp) derives from
// gloo::rendezvous::Store and marks its members `override`, so these virtuals must exist
// with these signatures. Their order follows the vtable of
// `c10d::ProcessGroupGloo::GlooStore` in PyTorch 2.11.0's libtorch_cpu.so: the two
// destructor slots, set, get, wait_get, wait(keys, timeout), has_v2_support, multi_get,
// multi_set, append, add (all from gloo::IStore), then wait(keys) (added by
// rendezvous::Store). The shim never creates or calls a store of this kind; libtorch wraps
// the c10d store itself.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

// The real header announces the extended store API this way; ProcessGroupGloo.hpp then
// declares GlooStore's overrides of it.
#define GLOO_STORE_HAS_STORE_V2 1

namespace gloo {

class IStore {
 public:
  virtual ~IStore() = default;
  virtual void set(const std::string& key, const std::vector<char>& data) = 0;
  virtual std::vector<char> get(const std::string& key) = 0;
  virtual std::vector<char> wait_get(
      const std::string& key,
      const std::chrono::milliseconds& timeout);
  virtual void wait(
      const std::vector<std::string>& keys,
      const std::chrono::milliseconds& timeout) = 0;
  virtual bool has_v2_support() = 0;
  virtual std::vector<std::vector<char>> multi_get(
      const std::vector<std::string>& keys) = 0;
  virtual void multi_set(
      const std::vector<std::string>& keys,
      const std::vector<std::vector<char>>& values) = 0;
  virtual void append(const std::string& key, const std::vector<char>& value) = 0;
  virtual int64_t add(const std::string& key, int64_t value) = 0;
};

namespace rendezvous {

class Store : public IStore {
 public:
  ~Store() override = default;
  virtual void wait(const std::vector<std::string>& keys) = 0;
};

} // namespace rendezvous
} // namespace gloo
