#!/usr/bin/env bash
# The speed and memory benchmark (default set < 15 min on a 2-core CPU): writes benchmarks/results/benchmark.{json,md}.
# Options go to benchmarks/run.py: --full (every size x batch x mode x speed), --device cuda, --only TEXT, --threads N.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec .venv/bin/python benchmarks/run.py "$@"
