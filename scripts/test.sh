#!/usr/bin/env bash
# The project's test command: sets up .venv (scripts/setup_venv.sh) and the headless browser of the web tests
# (scripts/install_browser.sh), lints, runs the pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
bash scripts/install_browser.sh
export OMP_WAIT_POLICY=PASSIVE
.venv/bin/python -m ruff check .
.venv/bin/python -m pytest "$@"
