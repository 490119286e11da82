# Sourced by the suites under tests/ that run the churnguard binary and its service, so
# that each suite says only what it checks.
#
#   source tests/lib/suite.sh        # ROOT, a clean environment, step
#   cg_bin                           # BIN: CHURNGUARD_BIN, or target/release/churnguard built
#   CHURNGUARD_API_KEYS=k cg_serve "$WORK/serve" --models "$MODELS"    # CG_URL, CG_SERVER_PID
#   trap cg_stop_server EXIT
#   cg_work OIP_WORK oip             # WORK: $OIP_WORK, or a temporary directory ...
#   cg_done                          # ... removed when the run passed (a failing run keeps it)
#
# PYTHON (default python3; standard library only) waits for the service.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# The caller's churnguard settings must not change what the binary does here.
for v in $(compgen -v CHURNGUARD_ || true); do
    [ "$v" = CHURNGUARD_BIN ] || unset "$v"
done
export CHURNGUARD_LOG=warn

step() { printf '\n== %s\n' "$*"; }

# cg_bin: sets BIN to $CHURNGUARD_BIN, or builds the release binary (the tests' profile).
cg_bin() {
    BIN="${CHURNGUARD_BIN:-}"
    if [ -z "$BIN" ]; then
        cargo build --release --locked --quiet --bin churnguard
        BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/churnguard"
    fi
    "$BIN" --version
}

# cg_end_date MANIFEST: the last day of the data a model version was trained on.
cg_end_date() {
    "${PYTHON:-python3}" -c 'import json, sys; print(json.load(open(sys.argv[1]))["training_data"]["time_range"][1][:10])' "$1"
}

# cg_serve PREFIX ARGS...: starts `$BIN serve --bind 127.0.0.1:0 ARGS` (the kernel picks the
# port; serve prints the address), output in PREFIX.out and PREFIX.err, and waits up to 60 s
# for /readyz to answer 200. Sets CG_URL and CG_SERVER_PID.
cg_serve() {
    local prefix="$1"
    shift
    "$BIN" serve --bind 127.0.0.1:0 "$@" > "$prefix.out" 2> "$prefix.err" &
    CG_SERVER_PID=$!
    CG_URL="$("${PYTHON:-python3}" - "$prefix" "$CG_SERVER_PID" <<'PY'
import os, re, sys, time, urllib.request
prefix, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while True:
    m = re.search(r" on (http://127\.0\.0\.1:[0-9]+)$", open(prefix + ".out").read(), re.M)
    if m:
        try:
            with urllib.request.urlopen(m.group(1) + "/readyz", timeout=2) as r:
                if r.status == 200:
                    print(m.group(1))
                    break
        except OSError:
            pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("churnguard serve exited before it was ready:\n" + open(prefix + ".err").read())
    if time.monotonic() > deadline:
        sys.exit("churnguard serve was not ready within 60 s:\n" + open(prefix + ".err").read())
    time.sleep(0.1)
PY
)"
    echo "serving on $CG_URL"
}

# cg_stop_server: stops the service cg_serve started, if it runs (for `trap ... EXIT`).
cg_stop_server() {
    if [ -n "${CG_SERVER_PID:-}" ] && kill -0 "$CG_SERVER_PID" 2> /dev/null; then
        kill "$CG_SERVER_PID" 2> /dev/null || true
        wait "$CG_SERVER_PID" 2> /dev/null || true
    fi
}

# cg_work VAR LABEL: sets WORK to the directory named by $VAR (emptied first, kept at the end),
# or to a new temporary directory that cg_done removes, so that a failing run keeps it, logs
# included, to look at. Stops the service cg_serve started at exit.
cg_work() {
    CG_KEEP_WORK="${!1:-}"
    if [ -n "$CG_KEEP_WORK" ]; then
        WORK="$CG_KEEP_WORK"
        rm -rf "$WORK"
        mkdir -p "$WORK"
    else
        WORK="$(mktemp -d "${TMPDIR:-/tmp}/churnguard-$2.XXXXXX")"
    fi
    trap cg_stop_server EXIT
}

# cg_done: the run passed: stops the service and removes a temporary WORK.
cg_done() {
    cg_stop_server
    [ -n "${CG_KEEP_WORK:-}" ] || rm -rf "$WORK"
}
