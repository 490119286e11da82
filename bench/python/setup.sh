#!/usr/bin/env bash
# Creates bench/.venv (git-ignored) and installs the pinned Python peers of the
# benchmarks: polars, scikit-learn, LightGBM, numpy, pyarrow.
#
#   bash bench/python/setup.sh            # idempotent: reuses a complete venv
#   PYTHON=python3.12 bash bench/python/setup.sh
#
# pip honours PIP_FIND_LINKS / PIP_INDEX_URL from the environment (a local wheel
# directory is used first when PIP_FIND_LINKS points at one).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="$(cd "$HERE/.." && pwd)/.venv"
PYTHON="${PYTHON:-python3}"
REQ="$HERE/requirements.txt"
STAMP="$VENV/.requirements.sha256"

want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    echo "bench/.venv is up to date ($("$VENV/bin/python" --version))"
    exit 0
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "needs Python >= 3.10 (set PYTHON=...)" >&2
    exit 1
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r "$REQ"
"$VENV/bin/python" -c 'import polars, sklearn, lightgbm, numpy, pyarrow; print("installed: polars", polars.__version__, "| scikit-learn", sklearn.__version__, "| lightgbm", lightgbm.__version__, "| numpy", numpy.__version__, "| pyarrow", pyarrow.__version__)'
echo "$want" > "$STAMP"
