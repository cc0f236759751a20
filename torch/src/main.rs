//! `peirce-worker`: runs one torch node under the worker protocol (see
//! `peirce_protocol`): `peirce-worker <node.json>`. `peirce-worker bench ...` measures
//! the sampler and the trainer instead (see `peirce_torch::bench`).

use std::process::ExitCode;

fn main() -> ExitCode {
    peirce_torch::device::prefer_flash_attention();
    if std::env::args_os()
        .nth(1)
        .is_some_and(|first| first == "bench")
    {
        let args: Vec<String> = std::env::args_os()
            .skip(2)
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        return peirce_torch::bench::main(&args);
    }
    let path = std::env::args_os()
        .nth(1)
        .or_else(|| std::env::var_os("PEIRCE_NODE_SPEC"));
    let Some(path) = path else {
        eprintln!("usage: peirce-worker <node.json> (or PEIRCE_NODE_SPEC)");
        return ExitCode::from(2);
    };
    match peirce_torch::worker::run(std::path::Path::new(&path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error.emit();
            ExitCode::FAILURE
        }
    }
}
