// The NCCL half of peirce's communication shim (see dist.cpp). Compiled only when torch's
// lib folder has libtorch_cuda.so and PyTorch's wheel has the CUDA runtime and NCCL
// headers (build.rs then defines PEIRCE_DIST_NCCL). Kept in its own file so that dist.cpp,
// the Gloo half, never sees the CUDA headers. The wheel's CUDA headers lack a few
// compiler-internal files: cuda-decl/README.md.

#include <chrono>
#include <cstddef>

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include <torch/headeronly/version.h>

#ifndef USE_C10D_NCCL
#error "dist_nccl.cpp needs USE_C10D_NCCL (build.rs defines it)"
#endif

// This file allocates `ProcessGroupNCCL::Options` and `ProcessGroupNCCL` with its own idea
// of their size, which depends on <nccl.h> (the `ncclConfig_t` member and the
// NCCL_HAS_* switches of NCCLUtils.hpp). It must agree with libtorch_cuda.so. For PyTorch
// 2.11.0 with the nvidia-nccl-cu13 2.28 headers of its wheel this was checked against the
// library: its `Options::Options(bool)` writes `split_color` (-2) at offset 0xf0 as the
// last member, and sizeof is 0xf8; its `ProcessGroupNCCL` constructor writes up to offset
// 0x450, and sizeof is 0x458. A different PyTorch needs the same check again.
#if !(TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR == 11)
#error "dist_nccl.cpp: layouts were checked for PyTorch 2.11 only; check them again (see comment)"
#endif
static_assert(
    NCCL_VERSION_CODE >= NCCL_VERSION(2, 28, 0) && NCCL_VERSION_CODE < NCCL_VERSION(2, 29, 0),
    "nccl.h is not the NCCL 2.28 that PyTorch 2.11's wheel pins");
static_assert(sizeof(c10d::ProcessGroupNCCL::Options) == 0xf8, "Options size != libtorch's");
static_assert(sizeof(c10d::ProcessGroupNCCL) == 0x458, "ProcessGroupNCCL size != libtorch's");

c10::intrusive_ptr<c10d::Backend> peirce_dist_make_nccl(
    const c10::intrusive_ptr<c10d::Store>& store,
    int rank,
    int world,
    std::chrono::milliseconds timeout) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, options);
}
