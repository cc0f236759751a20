# mergekit, the reference the merge tests and bench compare against (sourced, not run).
# It lives in its own virtualenv ($PEIRCE_MERGEKIT_VENV, default ~/.cache/peirce-venvs/mergekit)
# because it pulls a newer torch (about 6 GB, a few minutes the first time): the torch venv
# the worker builds against must never see it. peirce_mergekit_setup installs mergekit from
# PyPI only when `mergekit-yaml` is missing, and exports PEIRCE_MERGEKIT, the path of
# `mergekit-yaml`, which tests/merge.rs and benches/merge.rs run.

PEIRCE_MERGEKIT_VERSION="0.1.5"
export PEIRCE_MERGEKIT_VENV="${PEIRCE_MERGEKIT_VENV:-$HOME/.cache/peirce-venvs/mergekit}"

peirce_mergekit_setup() {
    local venv="$PEIRCE_MERGEKIT_VENV"
    if [ ! -x "$venv/bin/python" ]; then
        echo "mergekit: creating the mergekit virtualenv at $venv" >&2
        mkdir -p "$(dirname "$venv")"
        python3 -m venv "$venv" || return 1
    fi
    if [ ! -x "$venv/bin/mergekit-yaml" ]; then
        echo "mergekit: installing mergekit==$PEIRCE_MERGEKIT_VERSION into $venv (pulls torch: about 6 GB, a few minutes)" >&2
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "mergekit==$PEIRCE_MERGEKIT_VERSION" >&2 || return 1
    fi
    export PEIRCE_MERGEKIT="$venv/bin/mergekit-yaml"
}
