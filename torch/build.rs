//! Link fixes for libtorch.
//!
//! rustc links with `--as-needed`, so `libtorch_cuda.so`, which nothing references by
//! symbol (CUDA kernels register themselves from static initializers), would be dropped
//! and CUDA would be silently unavailable at run time. When torch's lib folder has it, we
//! force it in with `--no-as-needed`. We also record torch's lib folder as an rpath, so
//! `peirce-worker` starts from the engine without `LD_LIBRARY_PATH`.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
