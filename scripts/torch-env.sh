# The libtorch environment for torch (sourced, not run): peirce-torch and its
# `peirce-worker` binary link the libtorch that ships inside PyTorch's wheel (tch's
# `LIBTORCH_USE_PYTORCH=1`), so one persistent virtualenv outside the clone provides both
# the C++ libraries and a Python with the same torch for the interop tests.
#
# Creates or reuses the venv ($PEIRCE_TORCH_VENV, default ~/.cache/peirce-venvs/torch) and
# installs torch==2.11.0 only when that exact version is missing: pip never touches torch
# otherwise, and test tools go in through `peirce_torch_pip`, which pins torch with the
# constraint file $PEIRCE_TORCH_CONSTRAINTS. Exports LIBTORCH_USE_PYTORCH, PATH (the venv's
# python first) and LD_LIBRARY_PATH (torch's lib folder, for running the built binaries).

PEIRCE_TORCH_VERSION="2.11.0"
export PEIRCE_TORCH_VENV="${PEIRCE_TORCH_VENV:-$HOME/.cache/peirce-venvs/torch}"
export PEIRCE_TORCH_CONSTRAINTS="$PEIRCE_TORCH_VENV/constraints.txt"

peirce_torch_setup() {
    local venv="$PEIRCE_TORCH_VENV"
    if [ ! -x "$venv/bin/python" ]; then
        echo "torch-env: creating the torch virtualenv at $venv" >&2
        mkdir -p "$(dirname "$venv")"
        python3 -m venv "$venv" || return 1
    fi
    local have
    have="$("$venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)"
    if [ "$have" != "$PEIRCE_TORCH_VERSION" ]; then
        echo "torch-env: installing torch==$PEIRCE_TORCH_VERSION into $venv (about 4.6 GB, a few minutes)" >&2
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "torch==$PEIRCE_TORCH_VERSION" >&2 || return 1
    fi
    printf 'torch==%s\n' "$PEIRCE_TORCH_VERSION" >"$PEIRCE_TORCH_CONSTRAINTS"
    local lib
    lib="$("$venv/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')" || return 1
    export PEIRCE_TORCH_LIB="$lib"
    export LIBTORCH_USE_PYTORCH=1
    export PATH="$venv/bin:$PATH"
    export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

# Installs Python test tools into the torch venv without ever changing torch:
# `peirce_torch_pip 'transformers>=4.50' safetensors`. Skips what is already importable when
# called as `peirce_torch_pip_if_missing MODULE SPEC...`.
peirce_torch_pip() {
    "$PEIRCE_TORCH_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        --constraint "$PEIRCE_TORCH_CONSTRAINTS" "$@" >&2
}
peirce_torch_pip_if_missing() {
    local module="$1"
    shift
    "$PEIRCE_TORCH_VENV/bin/python" -c "import $module" 2>/dev/null || peirce_torch_pip "$@"
}

peirce_torch_setup
