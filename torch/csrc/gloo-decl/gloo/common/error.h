// peirce: declaration stand-in for Gloo's <gloo/common/error.h> (see ../../README.md).
// ProcessGroupGloo.hpp includes it but names nothing from it: Gloo's exceptions reach the
// shim as std::exception (they derive from std::runtime_error), which is how dist.cpp
// catches them.
#pragma once
