//! Link fixes for libtorch, and the C++ shim of [`dist`](src/dist.rs) and the fused AdamW of
//! [`optim`](src/optim.rs).
//!
//! rustc links with `--as-needed`, so `libtorch_cuda.so`, which nothing references by
//! symbol (CUDA kernels register themselves from static initializers), would be dropped
//! and CUDA would be silently unavailable at run time. When torch's lib folder has it, we
//! force it in with `--no-as-needed`. We also record torch's lib folder as an rpath, so
//! `peirce-worker` starts from the engine without `LD_LIBRARY_PATH`.
//!
//! The shim (`csrc/dist.cpp`, plus `csrc/dist_nccl.cpp` where CUDA is) reaches libtorch's
//! c10d process groups, which tch does not bind. It compiles against the headers of the
//! same torch (`<lib>/../include`), with our own declarations of what PyTorch's wheel does
//! not ship: Gloo's headers (`csrc/gloo-decl`) and, for the NCCL half, a few
//! compiler-internal CUDA headers (`csrc/cuda-decl`). The NCCL half is built when the lib
//! folder has `libtorch_cuda.so` and the wheel's CUDA runtime and NCCL headers are found
//! next to torch (`site-packages/nvidia/*/include`); `PEIRCE_DIST_NCCL=0` leaves it out.
//! `csrc/optim.cpp` binds libtorch's fused AdamW kernel (`_fused_adamw_`), which tch does not.
//! `csrc/graph.cpp` binds libtorch's CUDA graphs (`at::cuda::CUDAGraph`), also missing from
//! tch; it needs the CUDA runtime headers only, and without them (or with
//! `PEIRCE_CUDA_GRAPHS=0`) it builds as stubs that say graphs are unavailable.
//! `csrc/kernels.cpp` holds peirce's own decoding kernels, compiled at run time by NVRTC
//! (opened with dlopen, as is the driver: nothing more to link); it too needs the CUDA
//! headers and is a stub without them. `csrc/profile.cpp` binds libtorch's profiler (Kineto),
//! which the bench uses to say where a decoding step's time goes.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    let cuda = lib.join("libtorch_cuda.so").exists();
    if cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
    build_dist_shim(&lib, cuda);
}

/// Compiles `csrc/dist*.cpp` and `csrc/optim.cpp` into the static library `peirce_dist`.
fn build_dist_shim(lib: &Path, cuda: bool) {
    for path in [
        "csrc/dist.cpp",
        "csrc/optim.cpp",
        "csrc/graph.cpp",
        "csrc/kernels.cpp",
        "csrc/profile.cpp",
        "csrc/message.h",
        "csrc/dist_nccl.cpp",
        "csrc/gloo-decl",
        "csrc/cuda-decl",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=PEIRCE_DIST_NCCL");
    println!("cargo:rerun-if-env-changed=PEIRCE_CUDA_GRAPHS");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let torch = lib.parent().expect("torch's lib folder has a parent");
    let include = torch.join("include");
    // Same ABI switch and default as torch-sys (PyTorch 2.x wheels use the C++11 ABI).
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .define("GLOG_USE_GLOG_EXPORT", None)
        .define("USE_C10D_GLOO", None)
        // Torch's headers are theirs: as system headers their warnings stay quiet.
        .flag("-isystem")
        .flag(include.display().to_string())
        .flag("-isystem")
        .flag(include.join("torch/csrc/api/include").display().to_string())
        .include("csrc/gloo-decl")
        .warnings(true)
        .extra_warnings(true)
        .file("csrc/dist.cpp")
        .file("csrc/optim.cpp")
        .file("csrc/graph.cpp")
        .file("csrc/kernels.cpp")
        .file("csrc/profile.cpp");

    let cuda_include = if cuda { cuda_headers(torch) } else { None };
    if let Some(cuda_include) = &cuda_include {
        build
            .flag("-isystem")
            .flag(cuda_include.display().to_string())
            // After every other folder: a complete CUDA include folder wins over ours.
            .flag("-idirafter")
            .flag(Path::new("csrc/cuda-decl").display().to_string())
            .define("PEIRCE_CUDA_KERNELS", None);
        // `c10::cuda`'s streams live in libc10_cuda.so, which tch does not link.
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
        if std::env::var("PEIRCE_CUDA_GRAPHS").as_deref() != Ok("0") {
            build.define("PEIRCE_CUDA_GRAPHS", None);
        }
    }

    let nccl = match &cuda_include {
        Some(_) if std::env::var("PEIRCE_DIST_NCCL").as_deref() != Ok("0") => nccl_headers(torch),
        _ => None,
    };
    if let Some(nccl_include) = &nccl {
        build
            .define("USE_C10D_NCCL", None)
            .define("PEIRCE_DIST_NCCL", None)
            .flag("-isystem")
            .flag(nccl_include.display().to_string())
            .file("csrc/dist_nccl.cpp");
    } else if cuda {
        println!(
            "cargo:warning=peirce-torch: libtorch_cuda.so is there but the CUDA/NCCL headers \
             are not (or PEIRCE_DIST_NCCL=0): dist::Backend::Nccl will be unavailable"
        );
    }
    build.compile("peirce_dist");
}

/// The NCCL include folder of PyTorch's wheel, beside torch in `site-packages/nvidia/`.
fn nccl_headers(torch: &Path) -> Option<PathBuf> {
    let nccl = torch.parent()?.join("nvidia/nccl/include");
    nccl.join("nccl.h").exists().then_some(nccl)
}

/// The CUDA runtime include folder of PyTorch's wheel, found beside torch in
/// `site-packages/nvidia/`: the folder with `cuda_runtime_api.h` (`cu13/include`,
/// `cuda_runtime/include`, ...).
fn cuda_headers(torch: &Path) -> Option<PathBuf> {
    let nvidia = torch.parent()?.join("nvidia");
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&nvidia)
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path().join("include")))
        .filter(|include| include.join("cuda_runtime_api.h").exists())
        .collect();
    folders.sort();
    folders.into_iter().next()
}
