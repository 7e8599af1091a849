#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv with everything the demo and the tests need.
# torch is pinned by constraints/ci.txt to the CPU build; the package itself accepts a range.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.drdm-install-stamp
want=$(cat pyproject.toml constraints/ci.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c "import drdm, torch, pytest" 2>/dev/null; then
    echo "setting up .venv (log: .venv/install.log)"
    if ! { .venv/bin/python -m pip install --upgrade pip \
           && .venv/bin/python -m pip install -c constraints/ci.txt -e ".[test,web]"; } > .venv/install.log 2>&1; then
        tail -n 40 .venv/install.log
        echo "setup_venv: installing the project failed (full log: .venv/install.log)" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi
