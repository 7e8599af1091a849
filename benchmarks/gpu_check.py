"""Everything a lent GPU should measure, in one run within a time budget (issue 12 item 6; run it through
``bash scripts/gpu_check.sh``, which also sets up PyTorch with CUDA and refuses a machine without a GPU).

1. Sampler, seconds per sample and peak GPU memory: 2D 256² (the bundled cmr-2d) at batch 1, 8 and 32; 3D 64³
   and 128³ (a reference-size 3D network, width 10, zeroed output layer: the lct-3d cost; its weights are not
   public); fp32, bf16 autocast ("amp") and ``torch.compile`` of the network; fast and faithful speeds;
   diffeomorphic mode.
2. Training samples/s (fp32 and bf16): 2D 256² batch 8 and 3D 64³ batch 2.
3. A 3D 64³ training run from the zero start for about ``--train-seconds`` (steps from the measured
   throughput) and its recovery-error table on held-out phantoms.

Cases run in order of importance; once the budget is spent the rest are recorded as skipped. ``--smoke``
runs tiny sizes (for testing this script on a CPU with ``--device cpu``; its numbers mean nothing).
Writes ``benchmarks/results/gpu_<device>_<date>.{json,md}`` (or under ``--out``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import REPO, machine_description
from drdm.models import DRDMModel, untrained_model
from drdm.phantoms import cardiac_phantom, cardiac_short_axis_phantom
from drdm.registry import load_model_spec
from drdm.sampler import generate


class Network(torch.nn.Module):
    """The model's network under bf16 autocast (``amp``) and/or ``torch.compile``; float32 outputs."""

    def __init__(self, network: torch.nn.Module, amp: bool, compiled: bool) -> None:
        super().__init__()
        self.inner = network
        self.call = torch.compile(network, mode="max-autotune-no-cudagraphs") if compiled else network
        self.amp = amp
        self.in_channels = network.in_channels

    def forward(self, x: torch.Tensor, t: torch.Tensor, rec_num: int = 2) -> torch.Tensor:
        if not self.amp:
            return self.call(x, t, rec_num=rec_num)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.call(x, t, rec_num=rec_num).float()


def sampler_model(ndims: int, size: int, device: torch.device) -> tuple[DRDMModel, torch.Tensor]:
    if ndims == 2 and size == 256:
        model, image = load_model_spec("cmr-2d"), cardiac_short_axis_phantom(256, seed=0)[0]
    else:
        preset_size = 256 if ndims == 2 else 128
        small = {"control_size": 8, "velocity_scale": 4e-5 * preset_size / size} if size < 64 else {}  # --smoke sizes
        model = untrained_model(ndims, size=size, noise_overrides=small)
        torch.nn.init.zeros_(model.network.conv_out.weight)
        torch.nn.init.zeros_(model.network.conv_out.bias)
        image = cardiac_phantom(size, ndims, seed=0)[0]
    return model.to(device), image.to(device)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_sampler_case(case: dict, device: torch.device) -> dict:
    """Seconds per sample (median of ``runs`` after one warm-up) and peak memory of one sampler case."""
    model, image = sampler_model(case["dims"], case["size"], device)
    model.network = Network(model.network, case["precision"] == "amp", case["precision"] == "compiled")
    batch = image.expand((case["batch"],) + tuple(image.shape[1:])).contiguous()
    level = 56 if case["dims"] == 2 else 64

    def sample(seed: int) -> None:
        with torch.inference_mode():
            generate(model, batch, start_level=level, mode="diffeomorphic", speed=case["speed"],
                     generator=torch.Generator().manual_seed(seed))

    started = time.perf_counter()
    sample(0)
    synchronise(device)
    warmup = time.perf_counter() - started
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for run in range(case["runs"]):
        started = time.perf_counter()
        sample(run + 1)
        synchronise(device)
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"s_per_sample": statistics.median(times) / case["batch"], "s_per_batch": statistics.median(times),
            "warmup_s": round(warmup, 2), "peak_gib": None if peak is None else round(peak / 2**30, 3)}


def run_training_case(case: dict, device: torch.device, scratch: Path) -> dict:
    """Training samples/s over ``steps`` steps after two warm-up steps (forward process, loss and Adam step)."""
    from drdm.training import TrainingConfig, train

    common = dict(ndims=case["dims"], size=case["size"], batch=case["batch"], width=10, device=device.type,
                  amp="bf16" if case["precision"] == "amp" else "none", val_every=10**9, val_samples=1,
                  checkpoint_every=10**9, log_every=10**9, phantoms=8)
    out = scratch / f"train-{case['dims']}d-{case['precision']}"
    warm = train(TrainingConfig(out=str(out), steps=2, **common))
    synchronise(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    train(TrainingConfig(out=str(out), steps=2 + case["steps"], **common), resume=True)
    synchronise(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    del warm
    return {"samples_per_s": round(case["steps"] * case["batch"] / seconds, 2), "seconds": round(seconds, 1),
            "peak_gib": None if peak is None else round(peak / 2**30, 3)}


def run_zero_start_training(size: int, batch: int, seconds: float, samples_per_s: float, device: torch.device,
                            scratch: Path) -> dict:
    """A 3D from-scratch run of about ``seconds`` (steps from the measured throughput) and its table."""
    from drdm.training import TrainingConfig, train

    steps = max(10, int(seconds * samples_per_s / batch))
    config = TrainingConfig(out=str(scratch / "zero-start-3d"), ndims=3, size=size, batch=batch, width=10, steps=steps,
                            lr=3e-4, device=device.type, amp="bf16" if device.type == "cuda" else "none",
                            val_every=max(1, steps // 4), val_samples=4, checkpoint_every=10**9, log_every=max(1, steps // 20))
    started = time.perf_counter()
    result = train(config)
    metadata = json.loads(result.metadata.read_text(encoding="utf-8"))
    return {"steps": steps, "batch": batch, "size": size, "seconds": round(time.perf_counter() - started, 1),
            "last_loss": result.last_loss, "recovery_error": metadata.get("recovery_error"),
            "metrics_csv": (Path(config.out) / "metrics.csv").read_text(encoding="utf-8")}


def plan(smoke: bool) -> tuple[list[dict], list[dict], dict]:
    """``(sampler cases, training cases, zero-start settings)`` in order of importance."""
    two, three, big = (32, 16, 24) if smoke else (256, 64, 128)
    runs = 1 if smoke else 2
    shapes = [(2, two, b) for b in ((1, 2) if smoke else (1, 8, 32))] + [(3, three, 1), (3, big, 1)]
    sampler = []  # most important first: fp32 (fast, then faithful), bf16 autocast, then torch.compile (slow warm-up)
    for precision, speeds in (("fp32", ("fast", "faithful")), ("amp", ("fast",)), ("compiled", ("fast",))):
        for dims, size, batch in shapes:
            for speed in speeds:
                sampler.append({"dims": dims, "size": size, "batch": batch, "precision": precision, "speed": speed,
                                "runs": runs if speed == "fast" else 1})
    training = [{"dims": 2, "size": two, "batch": 2 if smoke else 8, "precision": p, "steps": 2 if smoke else 10}
                for p in ("fp32", "amp")]
    training += [{"dims": 3, "size": three, "batch": 2, "precision": p, "steps": 2 if smoke else 10} for p in ("fp32", "amp")]
    if smoke:  # one case of each kind, cheap on a CPU (bf16 and 3D sampling are slow there)
        sampler = [c for c in sampler if (c["dims"], c["batch"], c["precision"], c["speed"]) in
                   {(2, 1, "fp32", "fast"), (2, 1, "fp32", "faithful"), (2, 2, "amp", "fast"), (3, 1, "fp32", "fast")}
                   and c["size"] != big]
        training = [c for c in training if c["dims"] == 2 or c["precision"] == "fp32"]
    zero_start = {"size": three, "batch": 2, "seconds": 240.0}
    return sampler, training, zero_start


def label(case: dict) -> str:
    side = f"{case['size']}{'²' if case['dims'] == 2 else '³'}"
    return f"{case['dims']}D {side} b{case['batch']} {case['precision']}" + (f" {case['speed']}" if "speed" in case else "")


def write_markdown(report: dict, path: Path) -> None:
    lines = [f"# GPU check: {report['device_name']} ({report['date']})", "",
             f"`bash scripts/gpu_check.sh` — {report['seconds']:.0f} s in all (budget {report['budget_s']:.0f} s); "
             f"torch {report['machine'].get('torch')}; diffeomorphic mode; 2D = the bundled cmr-2d, 3D = a reference-size "
             "network (width 10) with a zeroed output layer.", "",
             "## Sampler", "", "| case | s / sample | s / batch | warm-up s | peak GiB |", "|---|---|---|---|---|"]
    for row in report["sampler"]:
        r = row.get("result") or {}
        if "error" in r or row.get("skipped"):
            lines.append(f"| {row['label']} | {r.get('error', 'skipped (budget)')} | | | |")
        else:
            lines.append(f"| {row['label']} | {r['s_per_sample']:.4f} | {r['s_per_batch']:.3f} | {r['warmup_s']} | "
                         f"{r['peak_gib']} |")
    lines += ["", "## Training throughput", "", "| case | samples/s | peak GiB |", "|---|---|---|"]
    for row in report["training"]:
        r = row.get("result") or {}
        value = r.get("error") or ("skipped (budget)" if row.get("skipped") else r["samples_per_s"])
        lines.append(f"| {row['label']} | {value} | {r.get('peak_gib', '')} |")
    zero = report.get("zero_start") or {}
    lines += ["", "## 3D training from the zero start", ""]
    if zero.get("recovery_error"):
        table = zero["recovery_error"]
        lines += [f"{zero['steps']} steps, batch {zero['batch']}, {zero['size']}³, {zero['seconds']} s; recovery error on "
                  f"held-out phantoms (t = {' / '.join(map(str, table['levels']))}): "
                  + " / ".join(f"{e:.3f}" for e in table["rows"][0]["errors"]) + f", mean {table['summary']:.3f}."]
    else:
        lines += [str(zero.get("error", "skipped (budget)"))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting new cases after this many seconds")
    parser.add_argument("--train-seconds", type=float, help="length of the zero-start 3D run (default 240, smoke 5)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: test this script (numbers mean nothing)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: PyTorch sees no CUDA GPU here (torch.cuda.is_available() is False)", flush=True)
        return 2
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    began = time.perf_counter()
    sampler_cases, training_cases, zero_start = plan(args.smoke)
    if args.train_seconds is not None:
        zero_start["seconds"] = args.train_seconds
    elif args.smoke:
        zero_start["seconds"] = 5.0
    report = {"device_name": name, "date": dt.date.today().isoformat(), "budget_s": args.budget_s, "smoke": args.smoke,
              "machine": machine_description(), "sampler": [], "training": [], "zero_start": None}
    # the zero-start run needs its share of the budget: keep it in reserve while the cases run
    reserve = zero_start["seconds"] + 30
    with tempfile.TemporaryDirectory() as scratch:
        for kind, cases in (("training", training_cases), ("sampler", sampler_cases)):
            for case in cases:
                row = {"label": label(case), "case": case}
                if time.perf_counter() - began > args.budget_s - reserve:
                    row["skipped"] = True
                else:
                    try:
                        row["result"] = (run_training_case(case, device, Path(scratch)) if kind == "training"
                                         else run_sampler_case(case, device))
                    except Exception as error:  # a failing case (e.g. compile unsupported) must not stop the check
                        row["result"] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
                print(f"{kind} {row['label']}: {row.get('result', 'skipped')}", flush=True)
                report[kind].append(row)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        three_d = [r for r in report["training"] if r["case"]["dims"] == 3 and "samples_per_s" in (r.get("result") or {})]
        if three_d:
            rate = max(r["result"]["samples_per_s"] for r in three_d)
            try:
                report["zero_start"] = run_zero_start_training(zero_start["size"], zero_start["batch"],
                                                               zero_start["seconds"], rate, device, Path(scratch))
            except Exception as error:
                report["zero_start"] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}
            print(f"zero start: {report['zero_start'].get('recovery_error', report['zero_start'])}", flush=True)
    report["seconds"] = time.perf_counter() - began
    stem = f"gpu_{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-').lower()}_{report['date']}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    write_markdown(report, args.out / f"{stem}.md")
    print(f"gpu_check: wrote {args.out / stem}.json and .md in {report['seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
