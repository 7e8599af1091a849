#!/usr/bin/env bash
# Train the two bundled demo models (drdm-demo-2d, drdm-demo-3d) on procedural phantoms with `drdm train`,
# then copy NAME.safetensors + NAME.json into DRDMSlicer/drdm/bundled/.
# Usage: bash scripts/train_demo_models.sh [RUN_FOLDER]   (default ./demo-training; resumable: rerun to continue)
# Wall time on this project's 2-core CPU with one thread: about 55 min (2D) + 50 min (3D).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
runs="${1:-demo-training}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
.venv/bin/drdm train --name drdm-demo-2d --dims 2 --size 128 --width 10 --steps 10000 --lr 3e-4 --seed 0 \
    --val-every 500 --checkpoint-every 250 --log-every 50 --device cpu --resume --out "$runs/drdm-demo-2d"
.venv/bin/drdm train --name drdm-demo-3d --dims 3 --size 32 --width 4 --steps 2500 --lr 3e-4 --seed 0 \
    --val-every 250 --checkpoint-every 100 --log-every 25 --device cpu --resume --out "$runs/drdm-demo-3d"
mkdir -p DRDMSlicer/drdm/bundled
for name in drdm-demo-2d drdm-demo-3d; do
    cp "$runs/$name/$name.safetensors" "$runs/$name/$name.json" DRDMSlicer/drdm/bundled/
done
ls -l DRDMSlicer/drdm/bundled/
