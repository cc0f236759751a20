//! Build script of the `peirce` binary: the commit it is built from, for `peirce --version`.
//!
//! From a git checkout (a clone or a worktree) it is `git rev-parse --short=12 HEAD`, and
//! the binary is rebuilt when HEAD moves. From a tarball without `.git`, or without `git`,
//! it is `unknown`; `PEIRCE_GIT_COMMIT` set at build time (a packager's) wins over both.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PEIRCE_GIT_COMMIT");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = std::env::var("PEIRCE_GIT_COMMIT")
        .ok()
        .filter(|commit| !commit.trim().is_empty())
        .or_else(|| git_commit(&manifest))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=PEIRCE_GIT_COMMIT={commit}");
}

/// `git ARGS` run in `dir`: its trimmed output, when it ran and succeeded.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

/// The short commit of HEAD, when `dir` is the top of a git checkout (not a tarball
/// unpacked inside some other repository).
fn git_commit(dir: &Path) -> Option<String> {
    let top = PathBuf::from(git(dir, &["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    // Rebuild when HEAD moves: HEAD itself, the branch it names, and packed refs, wherever
    // this checkout keeps them (a worktree's HEAD is outside it).
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(dir, &["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            println!("cargo:rerun-if-changed={}", dir.join(path).display());
        }
    }
    Some(commit)
}
