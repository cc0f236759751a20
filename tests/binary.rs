//! The `peirce` binary stays light (docs/architecture.md §2): it never links libtorch, which only
//! `peirce-worker` does, and it starts in milliseconds.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The shared libraries `binary` loads, as `ldd` resolves them (names and paths).
fn dynamic_libraries(binary: &Path) -> Vec<String> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .expect("`ldd` runs (package libc-bin)");
    assert!(
        output.status.success(),
        "ldd {}: {}",
        binary.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn links_torch(libraries: &[String]) -> bool {
    libraries.iter().any(|name| name.contains("torch"))
}

#[test]
fn peirce_does_not_link_libtorch_but_the_worker_does() {
    let peirce = Path::new(env!("CARGO_BIN_EXE_peirce"));
    let libraries = dynamic_libraries(peirce);
    assert!(!libraries.is_empty(), "ldd listed nothing for peirce");
    assert!(
        !links_torch(&libraries),
        "peirce links libtorch: {libraries:?}"
    );
    // The same check on the worker, built into the same folder by `cargo build
    // --workspace`, must find libtorch: otherwise the check above proves nothing.
    let worker = peirce.with_file_name("peirce-worker");
    if worker.is_file() {
        let libraries = dynamic_libraries(&worker);
        assert!(
            links_torch(&libraries),
            "the check does not see libtorch in peirce-worker: {libraries:?}"
        );
    } else {
        eprintln!(
            "note: {} is not built; only peirce was checked",
            worker.display()
        );
    }
}

#[test]
fn version_starts_in_under_50_ms() {
    let peirce = env!("CARGO_BIN_EXE_peirce");
    // The best of several runs: the bound is on the program, not on a busy test machine.
    let best = (0..7)
        .map(|_| {
            let started = Instant::now();
            let output = Command::new(peirce).arg("--version").output().unwrap();
            let elapsed = started.elapsed();
            assert!(output.status.success());
            assert!(String::from_utf8_lossy(&output.stdout).starts_with("peirce "));
            elapsed
        })
        .min()
        .unwrap();
    assert!(
        best < Duration::from_millis(50),
        "peirce --version took {best:?} at best"
    );
}

#[test]
fn a_closed_stdout_ends_peirce_quietly() {
    // The reading end is closed before peirce starts, so its first write fails.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_peirce"))
        .args(["tasks", "sample", "deduction", "--count", "2"])
        .stdout(writer)
        .output()
        .expect("peirce runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(141), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}
