#!/usr/bin/env bash
# The project's test command: sets up .venv (scripts/setup_venv.sh), lints, runs the pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
export OMP_WAIT_POLICY=PASSIVE
.venv/bin/python -m ruff check .
.venv/bin/python -m pytest "$@"
