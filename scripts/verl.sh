# verl, for the round trip of the exported datasets (tests/verl.rs runs tests/verl_check.py)
# (sourced, not run). It lives in its own virtualenv ($PEIRCE_VERL_VENV, default
# ~/.cache/peirce-venvs/verl): verl from PyPI without its training stack (ray, its dataset
# module's and reward loader's imports: transformers, datasets, omegaconf, tensordict, ...),
# and no torch of its own: torch, which verl imports but the round trip runs on CPU only, is
# linked from the mergekit virtualenv (scripts/mergekit.sh, which CI sets up first), so this
# venv costs about 0.95 GB and 3 minutes instead of another 6 GB. The links are to package
# folders only (no metadata): pip in this venv never sees, upgrades or removes that torch,
# and the mergekit venv is never written. peirce_verl_setup installs only when the venv
# lacks this verl version's marker, checks the imports, and exports PEIRCE_VERL_PYTHON.

PEIRCE_VERL_VERSION="0.9.1"
export PEIRCE_VERL_VENV="${PEIRCE_VERL_VENV:-$HOME/.cache/peirce-venvs/verl}"

peirce_verl_setup() {
    local venv="$PEIRCE_VERL_VENV"
    local marker="$venv/.peirce-verl-$PEIRCE_VERL_VERSION"
    local torch_site
    torch_site="$("${PEIRCE_MERGEKIT_VENV:?source scripts/mergekit.sh first}/bin/python" -c \
        'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || {
        echo "verl: no mergekit virtualenv to take torch from (run peirce_mergekit_setup)" >&2
        return 1
    }
    if [ ! -x "$venv/bin/python" ]; then
        echo "verl: creating the verl virtualenv at $venv" >&2
        mkdir -p "$(dirname "$venv")"
        python3 -m venv "$venv" || return 1
    fi
    local pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
    if [ ! -f "$marker" ]; then
        echo "verl: installing verl==$PEIRCE_VERL_VERSION (without its training stack) into $venv" >&2
        "${pip[@]}" --no-deps "verl==$PEIRCE_VERL_VERSION" "tensordict==0.10.0" >&2 || return 1
        # What verl's dataset module, tokenizer helpers and reward loader import, and
        # tensordict's and torch's pure-Python requirements (torch itself is linked below).
        "${pip[@]}" "transformers>=5.5.3,<5.11" datasets omegaconf pillow "ray>=2.41" \
            codetiming "pyvers>=0.1,<0.2" cloudpickle orjson importlib_metadata filelock \
            "typing-extensions>=4.13" "sympy>=1.13.3" "networkx>=2.5.1" jinja2 fsspec \
            "setuptools>=77" 2> >(grep -v -e "dependency resolver" -e "which is not installed" >&2) ||
            return 1
    fi
    local site
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" || return 1
    local package
    for package in torch torchgen functorch nvidia triton cuda; do
        if [ -e "$torch_site/$package" ]; then
            ln -sfn "$torch_site/$package" "$site/$package" || return 1
        fi
    done
    env -u LD_LIBRARY_PATH "$venv/bin/python" -c '
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder
from verl.trainer.ppo.reward import get_custom_reward_fn
' >/dev/null 2>&1 || {
        echo "verl: verl $PEIRCE_VERL_VERSION does not import in $venv:" >&2
        env -u LD_LIBRARY_PATH "$venv/bin/python" -c 'from verl.trainer.ppo.reward import get_custom_reward_fn' >&2
        return 1
    }
    touch "$marker"
    export PEIRCE_VERL_PYTHON="$venv/bin/python"
}
