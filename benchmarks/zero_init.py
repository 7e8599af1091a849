"""Learning curve of from-scratch training with and without the zero start (issue 12 item 4).

Runs of `drdm train` on procedural phantoms, identical except the output layer they start from (same seed,
data, draws, augmentation): "zero start" (the default: PyTorch's random output weights × 1e-3, bias 0),
"exact zero" (weights and bias 0) and "random" (`--no-zero-init`, PyTorch's default). After each checkpoint
step the run is resumed (bit-identical to one run), and the trained model's recovery-error table on held-out
phantoms (:mod:`drdm.training.recovery_error`, 2 draws per level) is read from its JSON; step 0 is the initial network.
CPU runs are short: they show the start of the curve, not a trained model (that needs GPU hours). Each start
can run on its own (``--starts``); results are merged into the results file. Usage:
    OMP_WAIT_POLICY=PASSIVE python benchmarks/zero_init.py [--starts zero exact-zero random] [--steps 10 25 50 100 200]
Writes benchmarks/results/zero_init.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import drdm.training.loop
import torch
from common import REPO, machine_description
from drdm.training.config import TrainingConfig
from drdm.training.data import TrainingImages
from drdm.training.initialisation import initial_model, zero_output_layer
from drdm.training.loop import train
from drdm.training.recovery_error import recovery_error_table

STARTS = {"zero": "zero start (default: output weights ×1e-3)", "exact-zero": "exact zero output layer",
          "random": "random output layer (--no-zero-init)"}


def exact_zero_model(config: TrainingConfig, device: torch.device):
    """:func:`initial_model` with the output layer set exactly to zero (the variant the default avoids)."""
    model = initial_model(config, device)
    zero_output_layer(model.network, scale=0.0)
    return model


def curve(config: TrainingConfig, checkpoints: list[int]) -> list[dict]:
    """``[{"step", "summary", "errors", "seconds", "loss"}]`` at step 0 and at every checkpoint."""
    images = TrainingImages.phantoms(config.ndims, config.size, config.phantoms, config.phantom_texture)
    held_out = [images.validation_image(i) for i in range(config.val_samples)]
    data = f"{config.val_samples} held-out validation images of the training data"
    table = recovery_error_table(drdm.training.loop.initial_model(config, torch.device("cpu")), [(data, held_out)])
    points = [{"step": 0, "summary": table["summary"], "errors": table["rows"][0]["errors"], "seconds": 0.0,
               "loss": None}]
    seconds = 0.0
    for step in checkpoints:
        config.steps = step
        started = time.perf_counter()
        result = train(config, resume=step != checkpoints[0])
        seconds += time.perf_counter() - started
        table = json.loads(result.metadata.read_text(encoding="utf-8"))["recovery_error"]
        points.append({"step": step, "summary": table["summary"], "errors": table["rows"][0]["errors"],
                       "seconds": round(seconds, 1), "loss": round(result.last_loss, 4)})
        print(f"zero_init={config.zero_init} step {step}: recovery error {table['summary']:.3f} "
              f"{table['rows'][0]['errors']} ({seconds:.0f} s)", flush=True)
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", nargs="+", choices=sorted(STARTS), default=["zero", "exact-zero", "random"])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50, 100, 200])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--val-samples", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = REPO / "benchmarks" / "results"
    path = out / "zero_init.json"
    settings = {"size": args.size, "width": args.width, "batch": args.batch, "lr": args.lr,
                "val_samples": args.val_samples, "steps": args.steps}
    earlier = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    curves = earlier.get("curves", {}) if earlier.get("settings") == settings else {}
    with tempfile.TemporaryDirectory() as scratch:
        for start in args.starts:
            config = TrainingConfig(out=str(Path(scratch) / start), ndims=2, size=args.size, width=args.width,
                                    batch=args.batch, lr=args.lr, seed=0, device="cpu", val_every=10**9,
                                    val_samples=args.val_samples, checkpoint_every=10**9, log_every=10**9,
                                    zero_init=start != "random", name="curve")
            drdm.training.loop.initial_model = exact_zero_model if start == "exact-zero" else initial_model
            curves[STARTS[start]] = curve(config, args.steps)
    drdm.training.loop.initial_model = initial_model
    settings["training"] = {k: v for k, v in asdict(config).items() if k not in ("out", "steps", "zero_init", "command")}
    report = {"curves": {STARTS[k]: curves[STARTS[k]] for k in STARTS if STARTS[k] in curves},
              "settings": {k: settings[k] for k in ("size", "width", "batch", "lr", "val_samples", "steps")},
              "training": settings["training"], "machine": machine_description()}
    path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    curves = report["curves"]
    steps = [0] + args.steps
    lines = ["# From-scratch training with and without the zero start", "",
             f"Recovery error (summary: mean over t = 10, 30, 50, 70; 1 = the zero solution) on {args.val_samples} "
             f"held-out phantoms, 2D {args.size}², width {args.width}, batch {args.batch}, lr {args.lr:g}, seed 0, "
             f"procedural phantoms; {report['machine']['cpu']}, {args.threads} threads. "
             "`OMP_WAIT_POLICY=PASSIVE python benchmarks/zero_init.py` (training s: cumulative wall time of the "
             "training calls, each start run on its own on a shared CPU).", "",
             "| start | " + " | ".join(f"step {s}" for s in steps) + " | training s |",
             "|---|" + "---|" * (len(steps) + 1)]
    for label, points in curves.items():
        lines.append(f"| {label} | " + " | ".join(f"{p['summary']:.3f}" for p in points) + f" | {points[-1]['seconds']} |")
    lines += ["", "Per level (t = 10 / 30 / 50 / 70) at the last step:", ""]
    for label, points in curves.items():
        lines.append(f"- {label}: " + " / ".join(f"{e:.3f}" for e in points[-1]["errors"]))
    (out / "zero_init.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
