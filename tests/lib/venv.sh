# Sourced by the suites under tests/ that need Python: a venv per pinned requirements file,
# rebuilt only when that file changes, installed with uv (pinned in tests/lib/uv-requirements.txt).
#
#   source tests/lib/venv.sh
#   cg_venv "$ROOT/tests/py/clients/.venv" "$ROOT/tests/py/clients/requirements.txt"
#   cg_pip "$ROOT/tests/py/clients/.venv" --no-deps --reinstall "$WORK/client"
#
# uv downloads and builds in parallel (pyspark is a source tarball: building its wheel is most of
# a cold venv), and does not byte-compile: a suite imports a small part of what it installs
# (pyspark alone is 4,000 modules), and Python compiles those on first import. uv itself lives in
# its own small venv (tests/py/.uv, made with pip, keyed the same way). Its cache is UV_CACHE_DIR
# (default ~/.cache/uv). PYTHON (default python3) is the interpreter the venvs are made from.

CG_UV_REQ="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/uv-requirements.txt"
CG_UV_VENV="$(cd "$(dirname "${BASH_SOURCE[0]}")/../py" && pwd)/.uv"

# cg_fresh VENV REQUIREMENTS: true when VENV was installed from REQUIREMENTS as it is now (its
# sha256 is kept in VENV/.requirements.sha256).
cg_fresh() {
    [ -x "$1/bin/python" ] && [ "$(cat "$1/.requirements.sha256" 2> /dev/null)" = "$(sha256sum "$2" | cut -d' ' -f1)" ]
}

# cg_uv: sets UV to the pinned uv, installed with pip into tests/py/.uv on first use.
cg_uv() {
    if ! cg_fresh "$CG_UV_VENV" "$CG_UV_REQ"; then
        rm -rf "$CG_UV_VENV"
        "${PYTHON:-python3}" -m venv "$CG_UV_VENV"
        "$CG_UV_VENV/bin/pip" install --quiet --disable-pip-version-check --no-compile -r "$CG_UV_REQ"
        sha256sum "$CG_UV_REQ" | cut -d' ' -f1 > "$CG_UV_VENV/.requirements.sha256"
    fi
    UV="$CG_UV_VENV/bin/uv"
    # The system's CA bundle (pip's, here), not only uv's built-in roots.
    export UV_NATIVE_TLS=1
}

# cg_venv VENV REQUIREMENTS: create or refresh VENV from REQUIREMENTS; an unchanged file reuses
# the venv as it is.
cg_venv() {
    local venv="$1" req="$2"
    if cg_fresh "$venv" "$req"; then
        echo "venv $venv: up to date"
        return
    fi
    cg_uv
    rm -rf "$venv"
    "$UV" venv --quiet --python "$(command -v "${PYTHON:-python3}")" "$venv"
    "$UV" pip install --quiet --python "$venv/bin/python" -r "$req"
    sha256sum "$req" | cut -d' ' -f1 > "$venv/.requirements.sha256"
    echo "venv $venv: installed from $req"
}

# cg_pip VENV ARGS...: `uv pip install ARGS` into VENV (the venvs have no pip of their own).
cg_pip() {
    local venv="$1"
    shift
    cg_uv
    "$UV" pip install --quiet --python "$venv/bin/python" "$@"
}
