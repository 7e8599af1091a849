#!/usr/bin/env bash
# The project's demo command: sets up .venv, then runs `drdm demo` (writes into ./drdm-demo/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
export OMP_WAIT_POLICY=PASSIVE
.venv/bin/drdm demo "$@"
