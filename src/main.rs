//! `peirce`: the command-line interface. Parses arguments and hands off to the commands in
//! [`cli`]; the engine, store and kinds live in the workspace crates. This binary never
//! links libtorch, so it starts in milliseconds.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // First of all: `peirce` re-executes itself as the supervisor of each node's command
    // (docs/architecture.md §12); such a process supervises and exits here.
    peirce_nodes::supervisor::run_if_requested();
    quiet_when_stdout_closes();
    let args = match cli::parse_arguments() {
        Ok(args) => args,
        Err(code) => return code,
    };
    cli::init_tracing(args.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::dispatch(args)) {
        Ok(code) => code,
        Err(error) => {
            // The whole chain: an error's sources (object_store's, reqwest's) may quote
            // URLs with credentials, so it is printed redacted (docs/architecture.md §10).
            eprintln!("error: {}", peirce_store::redact_url(&format!("{error:#}")));
            ExitCode::from(1)
        }
    }
}

/// `peirce plan --json | head` ends quietly when the reader goes away, as Unix tools do:
/// exit status 141 (a shell's SIGPIPE status), no panic message. Restoring SIGPIPE's
/// default action is not the way: a socket to a dead S3 server would then kill the process
/// mid-push instead of failing the request, which the retry and push logic handle.
fn quiet_when_stdout_closes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(cli::EXIT_STDOUT_CLOSED.into());
        }
        default(info);
    }));
}
