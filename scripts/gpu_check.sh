#!/usr/bin/env bash
# One-command GPU check that fits one lent device: at most 8 minutes on one H100 (budget 420 s for the measurements,
# a hard limit of 460 s on the Python process; installing packages, when needed, comes on top). benchmarks/gpu_check.py
# runs its phases in order of value, each written to benchmarks/results/gpu_<device>_<date>.{json,md} as it finishes
# (a run cut off keeps what it finished): the GPU tests (Testing/engine/test_gpu.py), fidelity to the reference vectors
# (precision exact / tf32, both layouts), 2D 256² samples eager against the CUDA-graph step (batch 1, 2, 4, 8), 2D
# reference faithful throughput at batch 32, 3D 128³ faithful and fast, the profile of one 3D 128³ recovery step,
# tf32 against exact (speed, distance, sample statistics over seeds), training samples/s, then a 3D 64³ training run
# from the zero start for what the budget leaves. Options go to benchmarks/gpu_check.py (--phases a,b,...,
# --train-seconds SECONDS, --out FOLDER); the budget: DRDM_GPU_BUDGET_S (default 420; a short rerun: 200).
#
# Environment: $PYTHON if it already has a CUDA PyTorch, else .venv-gpu (created here; it sees the system's
# packages, so a preinstalled CUDA torch is used; otherwise pip installs the project with PyPI's default Linux
# torch wheel, which is a CUDA build). A machine without internet (the lent device machines) needs the packages
# its Python lacks as wheels in .whl/ (SimpleITK there): they are installed into /tmp/drdm-site. Set DRDM_SHARED
# to a folder holding reference/vectors_public.npz for the fidelity rows. On a machine without an NVIDIA GPU it
# stops at once with exit status 2.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "gpu_check: $*" >&2; exit 2; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q "^GPU "; then
    fail "no NVIDIA GPU on this machine (nvidia-smi lists none); this check only runs on a GPU machine"
fi
nvidia-smi -L

has_cuda_torch() { "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }

PYTHON="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/drdm-site .whl/*.whl \
        || fail "installing the wheels in .whl/ failed"
    export PYTHONPATH="/tmp/drdm-site${PYTHONPATH:+:$PYTHONPATH}"
fi
if has_cuda_torch "$PYTHON" && "$PYTHON" -c "import safetensors, SimpleITK, tqdm, matplotlib" 2>/dev/null; then
    export PYTHONPATH="$PWD/DRDMSlicer${PYTHONPATH:+:$PYTHONPATH}"
else
    if [ ! -x .venv-gpu/bin/python ]; then
        "$PYTHON" -m venv --system-site-packages .venv-gpu
    fi
    PYTHON=.venv-gpu/bin/python
    echo "gpu_check: installing the project into .venv-gpu (log: .venv-gpu/install.log)"
    if ! "$PYTHON" -m pip install -e . > .venv-gpu/install.log 2>&1; then
        tail -n 20 .venv-gpu/install.log >&2
        fail "installing the project failed (full log: .venv-gpu/install.log)"
    fi
    has_cuda_torch "$PYTHON" || fail "the installed PyTorch has no CUDA support ($("$PYTHON" -c 'import torch; print(torch.__version__)'))"
fi

export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}" PYTHONUNBUFFERED=1
BUDGET_S="${DRDM_GPU_BUDGET_S:-420}"
exec timeout --kill-after=10 "$((BUDGET_S + 40))" "$PYTHON" benchmarks/gpu_check.py --device cuda --budget-s "$BUDGET_S" "$@"
