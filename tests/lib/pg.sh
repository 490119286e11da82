# Sourced by tests/postgres.sh and bench/outbox.sh: a throwaway PostgreSQL server on
# loopback.
#
#   source tests/lib/pg.sh
#   pg_start "$WORK"     # PG_URL (database churnguard_test, user cg, no password); stopped on EXIT
#
# Installs Debian's `postgresql` when no server is found (as root), runs initdb in
# WORK/data as the unprivileged `postgres` user when we are root (the server refuses
# root), else as ourselves, and listens on 127.0.0.1 on a free port. PG_BIN overrides the
# server's bin directory (default: the newest under /usr/lib/postgresql).

pg_newest_bin() { ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -1; }

pg_start() {
    local work="$1"
    PG_BIN="${PG_BIN:-$(pg_newest_bin)}"
    if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/postgres" ]; then
        if [ "$(id -u)" != 0 ]; then
            echo "no PostgreSQL server: apt-get install postgresql (as root)" >&2
            return 1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql > /dev/null
        PG_BIN="$(pg_newest_bin)"
    fi
    "$PG_BIN/postgres" --version
    if [ "$(id -u)" = 0 ]; then
        id postgres > /dev/null 2>&1 || useradd --system --no-create-home postgres
        pg_as() { runuser -u postgres -- "$@"; }
    else
        pg_as() { "$@"; }
    fi
    mkdir -p "$work"
    if [ "$(id -u)" = 0 ]; then chown postgres "$work"; fi
    PGDATA="$work/data"
    local port
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    trap pg_stop EXIT
    pg_as "$PG_BIN/initdb" -D "$PGDATA" -U cg --auth=trust -E UTF8 --locale=C.UTF-8 > "$work/initdb.log"
    # Loopback only; connections for two replicas, a batch and the test threads (16 each).
    pg_as "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$work/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $work -c max_connections=200" start > /dev/null
    pg_as "$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U cg -d postgres -qc "CREATE DATABASE churnguard_test"
    PG_URL="postgres://cg@127.0.0.1:$port/churnguard_test"
    echo "PostgreSQL on $PG_URL (data in $PGDATA, log in $work/server.log)"
}

pg_stop() {
    if [ -n "${PGDATA:-}" ] && [ -f "$PGDATA/postmaster.pid" ]; then
        pg_as "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop > /dev/null 2>&1 || true
    fi
}
