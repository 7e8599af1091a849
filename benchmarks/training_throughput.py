"""Training samples/s (issue 12 item 5): 2D 256², 3D 64³ and 3D 128³, reference-size network (width 10), with
the throughput options: none, channels-last, DataLoader workers, torch.compile (and bf16 autocast on CUDA);
the baseline runs first and last, which shows how much a shared machine moves the numbers.

Each case is one `drdm.training.loop.train` run on procedural phantoms; the rate is taken between the step
callbacks after the warm-up steps (start-up, compilation and saving excluded). Usage:
    OMP_WAIT_POLICY=PASSIVE python benchmarks/training_throughput.py [--device cpu] [--steps 4] [--only 2D]
Writes benchmarks/results/training_throughput[-cuda].{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from common import REPO, machine_description
from drdm.training.config import TrainingConfig
from drdm.training.loop import train

SHAPES = [(2, 256, 2), (3, 64, 1), (3, 128, 1)]  # (dims, size, batch)
VARIANTS = {"baseline": {}, "channels-last": {"channels_last": True}, "workers 2": {"workers": 2},
            "compile": {"compile": True}, "bf16": {"amp": "bf16"}, "baseline again": {}}  # again: the noise of a shared CPU


def rate(dims: int, size: int, batch: int, variant: dict, steps: int, warmup: int, device: str, scratch: Path) -> dict:
    """Samples/s between the warm-up steps and the last step, and the seconds of the whole run."""
    stamps = []
    config = TrainingConfig(out=tempfile.mkdtemp(dir=scratch),
                            ndims=dims, size=size, batch=batch, width=10, steps=warmup + steps, device=device,
                            val_samples=0, val_every=10**9, checkpoint_every=10**9, log_every=10**9, phantoms=8,
                            **variant)
    started = time.perf_counter()
    train(config, progress=lambda *_: stamps.append(time.perf_counter()))
    return {"samples_per_s": round(steps * batch / (stamps[-1] - stamps[warmup - 1]), 3),
            "run_s": round(time.perf_counter() - started, 1)}


def write_report(rows: list[dict], args: argparse.Namespace) -> None:
    """Results so far (written after every case, so a stopped run keeps what it measured)."""
    suffix = "" if args.device == "cpu" else f"-{args.device}"
    out = REPO / "benchmarks" / "results"
    report = {"rows": rows, "args": vars(args), "machine": machine_description()}
    (out / f"{args.out}{suffix}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    command = "".join(f" --{k.replace('_', '-')} {' '.join(map(repr, v)) if isinstance(v, list) else v!r}"
                      for k, v in vars(args).items() if v is not None)
    lines = [f"# Training samples/s ({args.device})", "",
             f"Reference-size network (width 10), procedural phantoms, Adam, losses and forward process included; "
             f"{report['machine']['cpu']}, {args.threads} threads, a CPU shared with other work; rate over "
             f"{args.steps} steps after the warm-up (3D 128³ on a CPU: 1 step). "
             f"`OMP_WAIT_POLICY=PASSIVE python benchmarks/training_throughput.py{command}`.", "",
             "| case | samples/s | run s |", "|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['label']} | {row.get('samples_per_s', row.get('error'))} | {row.get('run_s', '')} |")
    (out / f"{args.out}{suffix}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per case (3D 128³ on a CPU: 1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", help="run only cases whose label contains this text")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--out", default="training_throughput", help="results file stem in benchmarks/results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for dims, size, batch in SHAPES:
            for name, variant in VARIANTS.items():
                if (name == "bf16" and args.device != "cuda") or name not in args.variants:
                    continue
                label = f"{dims}D {size}{'²' if dims == 2 else '³'} batch {batch}, {name}"
                if args.only and args.only not in label:
                    continue
                big = dims == 3 and size == 128 and args.device == "cpu"
                steps, warmup = (1, 1) if big else (args.steps, 2 if name == "compile" else 1)
                try:
                    result = rate(dims, size, batch, variant, steps, warmup, args.device, Path(scratch))
                except Exception as error:  # e.g. torch.compile without a compiler: record it, go on
                    result = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"}
                rows.append({"label": label, "dims": dims, "size": size, "batch": batch, "variant": name,
                             "steps": steps, **result})
                print(label, result, flush=True)
                write_report(rows, args)


if __name__ == "__main__":
    main()
