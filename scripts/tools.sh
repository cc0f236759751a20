# Test tools that are not Rust crates (sourced by scripts/test and the S3 bench, not run):
# moto's S3 server and awscli, from PyPI, in a virtualenv outside the clone that persists
# across runs. Installs only what is missing. Exports PEIRCE_TOOLS_VENV.
export PEIRCE_TOOLS_VENV="${PEIRCE_TOOLS_VENV:-$HOME/.cache/peirce-venvs/tools}"
peirce_install_tools() {
    local venv="$PEIRCE_TOOLS_VENV"
    if [ ! -x "$venv/bin/python" ]; then
        echo "scripts: creating the tools virtualenv at $venv" >&2
        mkdir -p "$(dirname "$venv")"
        python3 -m venv "$venv"
    fi
    if [ ! -x "$venv/bin/moto_server" ] || [ ! -x "$venv/bin/aws" ]; then
        echo "scripts: installing moto[server] and awscli into $venv" >&2
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            'moto[server]>=5,<6' 'awscli>=1.33,<2' >&2
    fi
}

# A free TCP port on loopback (for the test servers of scripts/moto.sh and scripts/slurm.sh).
peirce_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
