// peirce: host-only stand-in for CUDA's compiler-internal <crt/host_defines.h>
// (see ../README.md): the macros the CUDA runtime headers use, as they read for host
// C++ compiled by GCC or Clang.
#pragma once

#if defined(__CUDACC__)
#error "peirce's crt/host_defines.h is for host C++ only; use the CUDA toolkit's headers"
#endif
#if !defined(__GNUC__)
#error "peirce's crt/host_defines.h supports GCC and Clang only"
#endif

#define __HOST_DEFINES_H__

// Function and variable attributes.
#define __no_return__ __attribute__((noreturn))
#undef __forceinline__
#define __forceinline__ __inline__ __attribute__((always_inline))
#define __inline_hint__
#define __align__(n) __attribute__((aligned(n)))
#define __builtin_align__(n) __align__(n)
#define __maxnreg__(n)
#define __thread__ __thread
#define __import__
#define __export__
#define __cdecl
#define __specialization_static
#define CUDARTAPI
#define CUDARTAPI_CDECL

// Device-side annotations: meaningless to a host compiler.
#define __annotate__(a)
#define __location__(a)
#if !defined(__host__)
#define __host__
#endif
#if !defined(__device__)
#define __device__
#endif
#if !defined(__global__)
#define __global__
#endif
#if !defined(__shared__)
#define __shared__
#endif
#if !defined(__constant__)
#define __constant__
#endif
#if !defined(__managed__)
#define __managed__
#endif
#if !defined(__grid_constant__)
#define __grid_constant__
#endif
#if !defined(__nv_pure__)
#define __nv_pure__
#endif
#if !defined(__cluster_dims__)
#define __cluster_dims__(...)
#endif
#define __device_builtin__
#define __device_builtin_texture_type__
#define __device_builtin_surface_type__
#define __cudart_builtin__
