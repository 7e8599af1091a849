"""Everything a lent GPU should measure, in one run within a time budget (issue 12 item 6; run it through
``bash scripts/gpu_check.sh``, which also sets up PyTorch with CUDA and refuses a machine without a GPU).

1. Sampler, seconds per sample and peak GPU memory: 2D 256² (the bundled cmr-2d) at batch 1, 8 and 32; 3D 64³
   and 128³ (a reference-size 3D network, width 10, zeroed output layer: the lct-3d cost; its weights are not
   public); fp32, bf16 autocast ("amp") and ``torch.compile`` of the network; fast and faithful speeds;
   diffeomorphic mode.
2. Training samples/s (fp32 and bf16): 2D 256² batch 8 and 3D 64³ batch 2.
3. A 3D 64³ training run from the zero start for about ``--train-seconds`` (steps from the measured
   throughput) and its recovery-error table on held-out phantoms.

0. Fidelity and the network call (issue 14): the bundled cmr-2d's outputs against the public reference vectors
   (``$DRDM_SHARED/reference/vectors_public.npz``, when present) per layout with cuDNN's TF32 on and off; one
   2D 256² call per layout, eager and replayed as a CUDA graph; every sampler case below runs eagerly and with
   the CUDA-graph recovery step (``generate(cuda_graph=...)``) and reports how far the two samples differ.

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
from common import REPO, SHARED, machine_description
from drdm.graph_capture import CapturedFunction
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
        with torch.autocast(x.device.type, dtype=torch.bfloat16, cache_enabled=False):  # no cast cache: graph-safe
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
    """Seconds per sample (median of ``runs`` after one warm-up) and peak memory of one sampler case; with the
    CUDA-graph step also the largest difference to the eager sample of the same seed (voxels)."""
    model, image = sampler_model(case["dims"], case["size"], device)
    model.network = Network(model.network, case["precision"] == "amp", case["precision"] == "compiled")
    batch = image.expand((case["batch"],) + tuple(image.shape[1:])).contiguous()
    level = 56 if case["dims"] == 2 else 64
    mode = case.get("mode", "diffeomorphic")

    def sample(seed: int, graph: bool) -> torch.Tensor:
        with torch.inference_mode():
            return generate(model, batch, start_level=level, mode=mode, speed=case["speed"],
                            generator=torch.Generator().manual_seed(seed), cuda_graph=graph).ddf

    started = time.perf_counter()
    sample(0, case["graph"])
    synchronise(device)
    warmup = time.perf_counter() - started
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for run in range(case["runs"]):
        started = time.perf_counter()
        sample(run + 1, case["graph"])
        synchronise(device)
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    result = {"s_per_sample": statistics.median(times) / case["batch"], "s_per_batch": statistics.median(times),
              "warmup_s": round(warmup, 2), "peak_gib": None if peak is None else round(peak / 2**30, 3)}
    if case["graph"] and case.get("compare", False):
        difference = (sample(1, True) - sample(1, False)).abs()
        result["max_diff_vs_eager_vox"] = float(difference.max())
        result["mean_diff_vs_eager_vox"] = float(difference.mean())
    return result


def median_call_ms(call, repeats: int, device: torch.device) -> float:
    """Median milliseconds of ``call()`` over ``repeats`` timed calls after three warm-up calls."""
    for _ in range(3):
        call()
    synchronise(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        synchronise(device)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def network_rows(device: torch.device) -> list[dict]:
    """Fidelity to the reference vectors (per layout, TF32 on/off) and one 2D 256² call's time per layout,
    eager and as a replayed CUDA graph (batch 1 and 8)."""
    import numpy as np

    model = load_model_spec("cmr-2d").to(device)
    network = model.network
    rows = []
    vectors = SHARED / "reference" / "vectors_public.npz"
    if vectors.is_file():
        with np.load(vectors) as data:
            x, ts, expected = (torch.from_numpy(np.ascontiguousarray(data[k])) for k in ("net_x", "net_t", "net_out_rec2"))
        for layout in ("reference", "channels-last"):
            network.set_layout(layout)
            for tf32 in (True, False):
                with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, allow_tf32=tf32):
                    out = torch.cat([network(x.to(device), int(t)) for t in ts]).cpu()
                rows.append({"kind": "fidelity", "layout": layout, "tf32": tf32,
                             "max_abs_diff": float((out.double() - expected.double()).abs().max())})
                print(f"fidelity {rows[-1]}", flush=True)
    image = cardiac_short_axis_phantom(256, seed=0)[0].to(device)
    for batch in (1, 8):
        x = image.expand(batch, -1, -1, -1).contiguous()
        t = torch.full((batch,), 40, dtype=torch.long, device=device)
        for layout in ("reference", "channels-last"):
            network.set_layout(layout)
            with torch.inference_mode():
                eager_ms = median_call_ms(lambda x=x, t=t: network(x, t), 30, device)
                captured = CapturedFunction(lambda a, b: (network(a, b),), (x, t))
                graph_ms = median_call_ms(lambda c=captured, x=x, t=t: c(x, t), 30, device)
                same = bool(torch.equal(captured(x, t)[0], network(x, t)))
            rows.append({"kind": "call", "batch": batch, "layout": layout, "eager_ms": round(eager_ms, 3),
                         "graph_ms": round(graph_ms, 3), "graph_equals_eager": same})
            print(f"call {rows[-1]}", flush=True)
    network.set_layout("channels-last")
    return rows


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
    sampler = []  # most important first: eager against the CUDA-graph step in fp32, then bf16, then torch.compile
    fp32 = [(2, two, 1, "reference", "faithful"), (2, two, 1, "diffeomorphic", "faithful"),
            (2, two, 1, "diffeomorphic", "fast"), (2, two, 1, "diffeomorphic", "faster"),
            (2, two, 8, "diffeomorphic", "fast"), (2, two, 32, "diffeomorphic", "fast"),
            (3, three, 1, "diffeomorphic", "fast"), (3, big, 1, "diffeomorphic", "fast")]
    for dims, size, batch, mode, speed in fp32:
        for graph in (False, True):
            sampler.append({"dims": dims, "size": size, "batch": batch, "precision": "fp32", "speed": speed, "mode": mode,
                            "graph": graph, "compare": True, "runs": runs if speed != "faithful" else 1})
    for precision, shapes in (("amp", ((2, two, 1), (2, two, 8), (3, three, 1))), ("compiled", ((2, two, 1),))):
        for dims, size, batch in shapes:
            sampler.append({"dims": dims, "size": size, "batch": batch, "precision": precision, "speed": "fast",
                            "mode": "diffeomorphic", "graph": True, "runs": runs})
    training = [{"dims": 2, "size": two, "batch": 2 if smoke else 8, "precision": p, "steps": 2 if smoke else 10}
                for p in ("fp32", "amp")]
    training += [{"dims": 3, "size": three, "batch": 2, "precision": p, "steps": 2 if smoke else 10} for p in ("fp32", "amp")]
    if smoke:  # a few cases of each kind, cheap on a CPU (bf16 and 3D sampling are slow there)
        sampler = [c for c in sampler if c["batch"] == 1 and c["dims"] == 2 and c["speed"] == "fast"
                   and c["precision"] != "compiled"]
        training = [c for c in training if c["dims"] == 2 or c["precision"] == "fp32"]
    zero_start = {"size": three, "batch": 2, "seconds": 240.0}
    return sampler, training, zero_start


def label(case: dict) -> str:
    side = f"{case['size']}{'²' if case['dims'] == 2 else '³'}"
    text = f"{case['dims']}D {side} b{case['batch']} {case['precision']}"
    if "speed" in case:
        text += f" {case['mode']} {case['speed']} {'graph' if case['graph'] else 'eager'}"
    return text


def write_markdown(report: dict, path: Path) -> None:
    lines = [f"# GPU check: {report['device_name']} ({report['date']})", "",
             f"`bash scripts/gpu_check.sh` — {report['seconds']:.0f} s in all (budget {report['budget_s']:.0f} s); "
             f"torch {report['machine'].get('torch')}; 2D = the bundled cmr-2d, 3D = a reference-size "
             "network (width 10) with a zeroed output layer; 'graph' = the recovery step replayed as a CUDA graph.", ""]
    fidelity = [r for r in report.get("network", []) if r.get("kind") == "fidelity"]
    calls = [r for r in report.get("network", []) if r.get("kind") == "call"]
    errors = [r for r in report.get("network", []) if r.get("kind") == "error"]
    if fidelity:
        lines += ["## Fidelity: max |output − reference vector net_out_rec2| (size units; tolerance 1e-5)", "",
                  "| layout | cuDNN TF32 | max abs diff |", "|---|---|---|"]
        lines += [f"| {r['layout']} | {'on' if r['tf32'] else 'off'} | {r['max_abs_diff']:.2e} |" for r in fidelity]
        lines.append("")
    if calls:
        lines += ["## One 2D 256² network call (ms, median of 30)", "",
                  "| batch | layout | eager | CUDA graph | eager / graph | graph output equals eager |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['batch']} | {r['layout']} | {r['eager_ms']:.3f} | {r['graph_ms']:.3f} | "
                  f"{r['eager_ms'] / r['graph_ms']:.2f}× | {r['graph_equals_eager']} |" for r in calls]
        lines.append("")
    lines += [f"network section failed: {r['error']}" for r in errors]
    lines += ["## Sampler", "", "| case | s / sample | s / batch | warm-up s | peak GiB | max / mean diff to eager (vox) |",
              "|---|---|---|---|---|---|"]
    for row in report["sampler"]:
        r = row.get("result") or {}
        if "error" in r or row.get("skipped"):
            lines.append(f"| {row['label']} | {r.get('error', 'skipped (budget)')} | | | | |")
        else:
            diff = (f"{r['max_diff_vs_eager_vox']:.2e} / {r['mean_diff_vs_eager_vox']:.2e}"
                    if "max_diff_vs_eager_vox" in r else "")
            lines.append(f"| {row['label']} | {r['s_per_sample']:.4f} | {r['s_per_batch']:.3f} | {r['warmup_s']} | "
                         f"{r['peak_gib']} | {diff} |")
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
        lines += [str(zero.get("error", "skipped (budget)" if report.get("training") else "not run yet"))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def error_text(error: Exception) -> dict:
    return {"error": f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"}


def save(report: dict, out: Path, began: float) -> None:
    """Write the report so far (a run cut off by its time limit still leaves what it measured)."""
    report["seconds"] = time.perf_counter() - began
    stem = f"gpu_{re.sub(r'[^A-Za-z0-9]+', '-', report['device_name']).strip('-').lower()}_{report['date']}"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    write_markdown(report, out / f"{stem}.md")


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
              "machine": machine_description(), "network": [], "sampler": [], "training": [], "zero_start": None}
    if device.type == "cuda":
        try:
            report["network"] = network_rows(device)
        except Exception as error:  # the rest of the check still runs
            report["network"] = [{"kind": "error", **error_text(error)}]
        save(report, args.out, began)
    # the zero-start run needs its share of the budget: keep it in reserve while the cases run
    reserve = zero_start["seconds"] + 30
    with tempfile.TemporaryDirectory() as scratch:
        for kind, cases in (("sampler", sampler_cases), ("training", training_cases)):
            for case in cases:
                row = {"label": label(case), "case": case}
                if time.perf_counter() - began > args.budget_s - reserve:
                    row["skipped"] = True
                else:
                    try:
                        row["result"] = (run_training_case(case, device, Path(scratch)) if kind == "training"
                                         else run_sampler_case(case, device))
                    except Exception as error:  # a failing case (e.g. compile unsupported) must not stop the check
                        row["result"] = error_text(error)
                print(f"{kind} {row['label']}: {row.get('result', 'skipped')}", flush=True)
                report[kind].append(row)
                save(report, args.out, began)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        three_d = [r for r in report["training"] if r["case"]["dims"] == 3 and "samples_per_s" in (r.get("result") or {})]
        if three_d:
            rate = max(r["result"]["samples_per_s"] for r in three_d)
            try:
                report["zero_start"] = run_zero_start_training(zero_start["size"], zero_start["batch"],
                                                               zero_start["seconds"], rate, device, Path(scratch))
            except Exception as error:
                report["zero_start"] = error_text(error)
            print(f"zero start: {report['zero_start'].get('recovery_error', report['zero_start'])}", flush=True)
    save(report, args.out, began)
    print(f"gpu_check: wrote the report under {args.out} in {report['seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
