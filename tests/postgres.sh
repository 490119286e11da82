#!/usr/bin/env bash
# The outbox on a real PostgreSQL server: installs the server (Debian's `postgresql`)
# when absent, runs initdb in a temporary directory as the unprivileged `postgres` user
# (the server refuses root), starts it on 127.0.0.1 on a free port (tests/lib/pg.sh), and
# runs every test marked `needs PostgreSQL` with CHURNGUARD_TEST_POSTGRES_URL pointing at
# it: the outbox's unit behaviour on PostgreSQL (the same bodies as on SQLite) and the
# end-to-end run of two `serve` replicas and a `score` batch sharing it, one replica
# killed with kill -9 mid-delivery. The server is stopped at the end, whatever happens.
#
#   bash tests/postgres.sh
#
# Environment: PG_BIN (the server's bin directory; default: the newest under
# /usr/lib/postgresql), PG_WORK (default: a new temporary directory).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for v in $(compgen -v CHURNGUARD_ || true); do
    unset "$v"
done
# shellcheck source=lib/pg.sh
source tests/lib/pg.sh

printf '\n== %s\n' "PostgreSQL server"
pg_start "${PG_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/churnguard-pg.XXXXXX")}"
export CHURNGUARD_TEST_POSTGRES_URL="$PG_URL"

printf '\n== %s\n' "outbox tests on PostgreSQL"
cargo test --release --locked --lib -- --ignored postgres
printf '\n== %s\n' "end to end: two replicas and a batch on one database"
cargo test --release --locked --test it -- --ignored postgres
