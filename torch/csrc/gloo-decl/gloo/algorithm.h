// peirce: declaration stand-in for Gloo's <gloo/algorithm.h> (see ../README.md).
// ProcessGroupGloo.hpp includes it but names nothing from it.
#pragma once
