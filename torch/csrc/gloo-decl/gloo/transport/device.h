// peirce: declaration stand-in for Gloo's <gloo/transport/device.h> (see ../../README.md).
//
// ProcessGroupGloo.hpp holds these only through std::shared_ptr / std::unique_ptr, whose
// size does not depend on the pointee, so incomplete types are all it needs. Objects of
// these types are created and destroyed inside libtorch_cpu.so only.
#pragma once

#include <memory>

namespace gloo {
namespace transport {

class Device;
class Pair;
class Context;
class UnboundBuffer;

} // namespace transport
} // namespace gloo
