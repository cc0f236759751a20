# Shared settings for the project's scripts (sourced, not run).
# One persistent target folder outside the clone, so CI and later runs on the same machine
# reuse the build; one profile (dev, with optimized dependencies) for tests and the binary.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/peirce-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Every build needs libtorch (peirce-worker links it; `peirce` itself never does): the
# torch virtualenv, created on first use, provides it.
source "$(dirname "${BASH_SOURCE[0]}")/torch-env.sh"
