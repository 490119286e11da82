# Sourced by the suites under tests/ that need Python: a venv per pinned requirements file,
# rebuilt only when that file changes.
#
#   source tests/lib/venv.sh
#   cg_venv "$ROOT/tests/py/clients/.venv" "$ROOT/tests/py/clients/requirements.txt"
#
# PYTHON (default python3) is the interpreter the venv is made from. pip does not byte-compile
# (--no-compile): a suite imports a small part of what it installs (pyspark alone is 4,000
# modules), and Python compiles those on first import.

# cg_venv VENV REQUIREMENTS: create or refresh VENV from REQUIREMENTS (a sha256 of the file is
# kept in VENV/.requirements.sha256, so an unchanged file reuses the venv as it is).
cg_venv() {
    local venv="$1" req="$2" want
    want="$(sha256sum "$req" | cut -d' ' -f1)"
    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
        rm -rf "$venv"
        "${PYTHON:-python3}" -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-compile -r "$req"
        echo "$want" > "$venv/.requirements.sha256"
        echo "venv $venv: installed from $req"
    else
        echo "venv $venv: up to date"
    fi
}
