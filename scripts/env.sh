# Shared settings for the project's scripts (sourced, not run).
# One persistent target folder outside the clone, so CI and later runs on the same machine
# reuse the build; one profile (dev, with optimized dependencies) for tests and the binary.
# A git worktree (its `.git` is a file) gets a target folder of its own: cargo names a
# workspace's artifacts and fingerprints by paths relative to the workspace, so two
# checkouts sharing one folder would silently build with each other's sources.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    peirce_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    if [ -f "$peirce_root/.git" ]; then
        export CARGO_TARGET_DIR="$HOME/.cache/peirce-target-$(basename "$peirce_root")"
    else
        export CARGO_TARGET_DIR="$HOME/.cache/peirce-target"
    fi
    unset peirce_root
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Every build needs libtorch (peirce-worker links it; `peirce` itself never does): the
# torch virtualenv, created on first use, provides it.
source "$(dirname "${BASH_SOURCE[0]}")/torch-env.sh"
