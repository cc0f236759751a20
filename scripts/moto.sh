# Starts and stops moto's S3 server for the tests and benches (sourced, not run; after
# scripts/tools.sh). peirce_start_moto exports what the S3 tests read:
#   PEIRCE_TEST_S3_ENDPOINT  http://127.0.0.1:PORT of the shared server
#   PEIRCE_TEST_MOTO         moto_server, for tests that start (and kill) a server of their own
#   PEIRCE_TEST_AWS          awscli, for the bench's reference
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION: dummy values the server accepts
peirce_start_moto() {
    local port log
    port="$(peirce_free_port)"
    log="$(mktemp -t peirce-moto.XXXXXX)"
    "$PEIRCE_TOOLS_VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    PEIRCE_MOTO_PID=$!
    for _ in $(seq 1 200); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
            break
        fi
        kill -0 "$PEIRCE_MOTO_PID" 2>/dev/null || { cat "$log" >&2; echo "moto_server did not start" >&2; return 1; }
        sleep 0.1
    done
    export PEIRCE_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
    export PEIRCE_TEST_MOTO="$PEIRCE_TOOLS_VENV/bin/moto_server"
    export PEIRCE_TEST_AWS="$PEIRCE_TOOLS_VENV/bin/aws"
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
    unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_DEFAULT_REGION
    echo "scripts: moto S3 server on $PEIRCE_TEST_S3_ENDPOINT (log: $log)" >&2
}

peirce_stop_moto() {
    if [ -n "${PEIRCE_MOTO_PID:-}" ]; then
        kill "$PEIRCE_MOTO_PID" 2>/dev/null || true
        wait "$PEIRCE_MOTO_PID" 2>/dev/null || true
        PEIRCE_MOTO_PID=
    fi
}
