// peirce: declaration stand-in for Gloo's <gloo/context.h> (see ../README.md).
//
// Layout as in the Gloo built into PyTorch 2.11.0's libtorch_cpu.so, read from its
// `gloo::Context::Context(int, int, int)` and `getTimeout()`: no vtable pointer (the
// class is not polymorphic there; libtorch_cpu.so exports no vtable for it), rank at 0,
// size at 4, base at 8, the device at 0x10, the transport context at 0x20, slot at 0x30,
// timeout (milliseconds, 30 s by default) at 0x38; 0x40 bytes in all. The shim never
// touches a field: ProcessGroupGloo.hpp only needs `setTimeout` declared.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>

#include <gloo/transport/device.h>

namespace gloo {

class Context {
 public:
  Context(int rank, int size, int base = 2);
  ~Context();

  const int rank;
  const int size;
  int base;

  std::shared_ptr<transport::Device>& getDevice();
  std::unique_ptr<transport::Pair>& getPair(int i);
  std::unique_ptr<transport::UnboundBuffer> createUnboundBuffer(void* ptr, size_t size);
  int nextSlot(int numToSkip = 1);
  void closeConnections();
  void setTimeout(std::chrono::milliseconds timeout);
  std::chrono::milliseconds getTimeout() const;

 protected:
  std::shared_ptr<transport::Device> device_;
  std::shared_ptr<transport::Context> transportContext_;
  int slot_;
  std::chrono::milliseconds timeout_;
};

} // namespace gloo
