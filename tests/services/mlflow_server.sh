#!/usr/bin/env bash
# A team MLflow tracking server on this machine: PostgreSQL (the machine's own binaries, a cluster
# initialised in DIR) as the backend store, artifacts served by the server from DIR/artifacts.
# For `make mlflow-server` and the `server` tests.
#   tests/services/mlflow_server.sh start DIR     initdb if new, start PostgreSQL and `mlflow server`,
#                                                 wait until /health answers; prints the tracking URI
#   tests/services/mlflow_server.sh stop DIR      stop both
#   tests/services/mlflow_server.sh status DIR
# Ports: MLFLOW_PORT (default 5000), PG_PORT (default 5433). MLFLOW: the mlflow executable
# (default: the one beside this shell's python, else on PATH).
# Exit codes: 0 ok; 3 cannot run here (no PostgreSQL binaries, no full mlflow or psycopg2, a
# server that did not come up).
set -euo pipefail

action=${1:?usage: mlflow_server.sh start|stop|status DIR}
dir=$(mkdir -p "${2:?usage: mlflow_server.sh start|stop|status DIR}" && cd "$2" && pwd)
mlflow_port=${MLFLOW_PORT:-5000}
pg_port=${PG_PORT:-5433}
pgdata=$dir/postgres
mlflow_bin=${MLFLOW:-$(command -v mlflow || true)}

fail() { echo "mlflow_server.sh: $*" >&2; exit 3; }

pg_bin() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$bin" ] || bin=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")
    [ -x "$bin/initdb" ] || fail "no PostgreSQL binaries (initdb) under /usr/lib/postgresql/*/bin or on PATH"
    echo "$bin"
}

# PostgreSQL refuses to run as root: as root, its files belong to (and it runs as) `postgres`.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || fail "running as root but there is no user postgres"
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local bin
    bin=$(pg_bin)
    [ -n "$mlflow_bin" ] && [ -x "$mlflow_bin" ] || fail "no mlflow executable (pip install -e '.[server]')"
    "$(dirname "$mlflow_bin")/python" -c "import flask, psycopg2" 2>/dev/null \
        || fail "the full mlflow package and psycopg2 are needed (pip install -e '.[server]')"
    if [ ! -f "$pgdata/PG_VERSION" ]; then
        mkdir -p "$pgdata"
        if [ "$(id -u)" = 0 ]; then
            chown postgres: "$pgdata"
            as_pg test -x "$dir" || fail "user postgres cannot enter $dir; pick a folder it can reach"
        fi
        as_pg "$bin/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
            || fail "initdb failed (see $dir/initdb.log)"
    fi
    if ! as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
        as_pg "$bin/pg_ctl" -D "$pgdata" -w -l "$pgdata/server.log" \
            -o "-p $pg_port -k $pgdata -c listen_addresses=127.0.0.1" start >/dev/null \
            || fail "PostgreSQL did not start (see $pgdata/server.log)"
    fi
    as_pg "$bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'mlflow'" | grep -q 1 \
        || as_pg "$bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres mlflow
    if [ -f "$dir/mlflow.pid" ] && kill -0 "$(cat "$dir/mlflow.pid")" 2>/dev/null; then
        echo "http://127.0.0.1:$mlflow_port"
        return
    fi
    mkdir -p "$dir/artifacts"
    # Its own session, so that stop ends the server and its workers together.
    setsid "$mlflow_bin" server \
        --backend-store-uri "postgresql+psycopg2://postgres@127.0.0.1:$pg_port/mlflow" \
        --artifacts-destination "$dir/artifacts" --serve-artifacts \
        --host 127.0.0.1 --port "$mlflow_port" --workers 2 \
        >"$dir/mlflow.log" 2>&1 < /dev/null &
    echo $! > "$dir/mlflow.pid"
    for _ in $(seq 120); do
        if "$(dirname "$mlflow_bin")/python" -c \
            "import urllib.request as u; u.urlopen('http://127.0.0.1:$mlflow_port/health', timeout=2)" \
            2>/dev/null; then
            echo "http://127.0.0.1:$mlflow_port"
            return
        fi
        kill -0 "$(cat "$dir/mlflow.pid")" 2>/dev/null || break
        sleep 1
    done
    tail -5 "$dir/mlflow.log" >&2 || true
    fail "mlflow server did not answer on port $mlflow_port (see $dir/mlflow.log)"
}

stop() {
    if [ -f "$dir/mlflow.pid" ]; then
        kill -- -"$(cat "$dir/mlflow.pid")" 2>/dev/null || true
        rm -f "$dir/mlflow.pid"
    fi
    if [ -f "$pgdata/PG_VERSION" ]; then
        as_pg "$(pg_bin)/pg_ctl" -D "$pgdata" -m fast stop >/dev/null 2>&1 || true
    fi
}

status() {
    as_pg "$(pg_bin)/pg_ctl" -D "$pgdata" status || true
    if [ -f "$dir/mlflow.pid" ] && kill -0 "$(cat "$dir/mlflow.pid")" 2>/dev/null; then
        echo "mlflow server: pid $(cat "$dir/mlflow.pid"), http://127.0.0.1:$mlflow_port"
    else
        echo "mlflow server: not running"
    fi
}

case "$action" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: mlflow_server.sh start|stop|status DIR" >&2; exit 2 ;;
esac
