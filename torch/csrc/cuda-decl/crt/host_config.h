// peirce: host-only stand-in for CUDA's compiler-internal <crt/host_config.h>
// (see ../README.md). For host C++ the real header defines nothing that the runtime
// headers use; it configures host compilers only when nvcc drives them.
#pragma once

#if defined(__CUDACC__)
#error "peirce's crt/host_config.h is for host C++ only; use the CUDA toolkit's headers"
#endif
