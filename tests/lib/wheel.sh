# Sourced by the suites that need the churnguard Python package (tests/python.sh,
# tests/spark.sh, tests/notebooks.sh): builds the wheel with maturin into target/wheels,
# sharing the workspace's one build of polars, and installs it into a venv.
#
#   source tests/lib/wheel.sh
#   cg_wheel "$VENV" "$WORK/maturin.log"        # WHEEL, WHEEL_SECONDS
#
# VENV must hold maturin (pinned in the suite's requirements file); tests/lib/venv.sh must be
# sourced first (cg_pip installs the wheel). The build FAILS if
# maturin compiles any polars crate: python/Cargo.toml adds no polars feature of its own, so
# `cargo build --release` at the root and maturin select the same polars units.

# cg_wheel VENV LOG: build the wheel (log in LOG), fail on a polars rebuild, install it into VENV.
cg_wheel() {
    local venv="$1" log="$2" t0
    mkdir -p "$(dirname "$log")"
    rm -f "$ROOT"/target/wheels/churnguard-*.whl
    t0=$(date +%s)
    # -i: the venv's interpreter (maturin would take the first python3 on PATH).
    "$venv/bin/maturin" build --release --locked -m "$ROOT/python/Cargo.toml" -i "$venv/bin/python" -v \
        > "$log" 2>&1 || { tail -40 "$log"; return 1; }
    WHEEL_SECONDS=$(( $(date +%s) - t0 ))
    if grep -q 'Compiling polars' "$log"; then
        grep 'Compiling polars\|Dirty polars' "$log" | head -20
        echo "FAIL: building the wheel recompiled polars: the binding must share the workspace's build (python/Cargo.toml: no polars features of its own)" >&2
        return 1
    fi
    grep -E '^ *(Compiling|Finished)' "$log" | sed 's/^ */  /'
    WHEEL="$(ls "$ROOT"/target/wheels/churnguard-*.whl)"
    echo "built $WHEEL ($(du -h "$WHEEL" | cut -f1)) in ${WHEEL_SECONDS}s"
    cg_pip "$venv" --no-deps --reinstall "$WHEEL"
}
