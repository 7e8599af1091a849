"""Everything a lent GPU should measure, in phases of decreasing value within one time budget (issue 22; run it
through ``bash scripts/gpu_check.sh``, which sets up PyTorch with CUDA and refuses a machine without a GPU).

1. ``gpu_tests``: ``Testing/engine/test_gpu.py`` (CUDA against CPU, graph against eager, the graph rule, TF32, AMP training).
2. ``fidelity``: the bundled cmr-2d against the public reference vectors per layout, precision exact / tf32; one
   2D 256² call per layout, eager and as a CUDA graph.
3. ``graph``: 2D 256² samples eager against the CUDA-graph step: batch 1 (reference faithful, diffeomorphic
   faithful / fast / faster) and diffeomorphic fast at batches 2, 4 and 8 (the threshold of
   ``drdm.settings.cuda_graph_by_rule``), with the largest difference between the two samples.
4. ``throughput``: 2D 256² reference faithful at batch 32, samples/s (the authors' sampler: 6.2/s on an H100).
5. ``sampler_3d``: 3D 128³ reference faithful, diffeomorphic faithful and fast (reference architecture, random
   weights, zeroed output layer: the lct-3d cost); the goal is a faithful sample in ≤ 2 s.
6. ``profile``: one 3D 128³ recovery step under torch.profiler: step and network time, the top kernels.
7. ``precision``: tf32 against exact: speed (2D b1 fast with the graph, 3D 128³ fast, 3D faithful, 2D b32), the
   distance of each sample to the exact one, and the field statistics of 8 seeds (cmr-2d, fast and faithful).
8. ``training``: training samples/s, 2D 256² batch 8 and 3D 64³ batch 2, fp32 and bf16.
9. ``zero_start``: as much of a 3D 64³ training run from the zero start as the budget leaves, in chunks, each
   ending with its recovery-error table.

Each phase is written to ``benchmarks/results/gpu_<device>_<date>.{json,md}`` as it starts ("running") and
as each of its cases finishes, so a run cut off keeps everything it finished. A phase or case whose estimated
time (H100 seconds, from the H200 figures) no longer fits the budget is recorded as skipped, never started.
``--smoke`` runs tiny sizes (for testing this script on a CPU with ``--device cpu``; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from common import REPO, SHARED, machine_description
from gpu_cases import (
    call_rows,
    fidelity_rows,
    profile_recovery_step,
    sampler_case,
    sampler_model,
    seed_statistics,
    training_case,
    training_chunk,
)
from gpu_report import write_markdown

AUTHORS_SAMPLES_PER_S = 6.2  # the authors' sampler, 2D 256² batch 32 on an H100 (DESIGN.md: 0.16 s a sample)
GOAL_3D_FAITHFUL_S = 2.0  # issue 22: a 3D 128³ faithful sample in at most 2 s on one H100
TEST_TIMEOUT_S = 150.0


@dataclass
class Context:
    """What every phase needs: the device, the sizes, scratch space, the deadline and a way to save the report."""

    device: torch.device
    smoke: bool
    scratch: Path
    deadline: float
    report: dict
    save: Callable[[], None]
    train_seconds: float | None

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    @property
    def two(self) -> int:
        return 32 if self.smoke else 256

    @property
    def three(self) -> int:
        return 16 if self.smoke else 64

    @property
    def big(self) -> int:
        return 16 if self.smoke else 128


def error_text(error: BaseException) -> dict:
    return {"error": f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"}


def run_cases(ctx: Context, rows: list, cases: list[dict], measure: Callable[[dict], dict]) -> None:
    """Run ``cases`` in order into ``rows`` (saved after each); a case whose ``estimate_s`` exceeds the time left
    is recorded as skipped; a failing case records its error and the rest still run."""
    for case in cases:
        row = {"label": label(case), "case": case}
        rows.append(row)
        if not ctx.smoke and ctx.left() < case.get("estimate_s", 0):
            row["skipped"] = "budget"
        else:
            try:
                row["result"] = measure(case)
            except Exception as error:  # one failing case must not stop the check
                row["result"] = error_text(error)
            if ctx.device.type == "cuda":
                torch.cuda.empty_cache()
        print(f"  {row['label']}: {row.get('result', 'skipped')}", flush=True)
        ctx.save()


def label(case: dict) -> str:
    side = f"{case['size']}{'²' if case['dims'] == 2 else '³'}"
    text = f"{case['dims']}D {side} b{case['batch']} {case['precision']}"
    if "speed" in case:
        text += f" {case['mode']} {case['speed']} {'graph' if case['graph'] else 'eager'}"
    return text


def sampler(dims: int, size: int, batch: int, mode: str, speed: str, graph: bool, estimate_s: float, *,
            precision: str = "exact", runs: int | None = None, compare: bool = False) -> dict:
    return {"dims": dims, "size": size, "batch": batch, "mode": mode, "speed": speed, "graph": graph,
            "precision": precision, "runs": runs or (1 if speed == "faithful" else 2), "compare": compare,
            "estimate_s": estimate_s}


# -- the phases, in order of value ----------------------------------------------------------------------------------

def phase_gpu_tests(ctx: Context, data: dict) -> None:
    """``Testing/engine/test_gpu.py`` in a subprocess (its summary line and failures recorded)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "Testing" / "engine" / "test_gpu.py")]
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                              timeout=max(10.0, min(TEST_TIMEOUT_S, ctx.left())))
    except subprocess.TimeoutExpired:
        data.update(passed=False, summary=f"timed out after {TEST_TIMEOUT_S:.0f} s")
        return
    lines = done.stdout.strip().splitlines()
    data.update(passed=done.returncode in (0, 5), returncode=done.returncode, summary=lines[-1] if lines else "",
                failures=[line for line in lines if line.startswith(("FAILED", "ERROR"))][:20])


def phase_fidelity(ctx: Context, data: dict) -> None:
    vectors = SHARED / "reference" / "vectors_public.npz"
    data["rows"] = fidelity_rows(ctx.device, vectors) if vectors.is_file() else []
    if not vectors.is_file():
        data["note"] = f"no reference vectors at {vectors} (set DRDM_SHARED)"
    ctx.save()
    if ctx.device.type == "cuda":
        data["calls"] = call_rows(ctx.device)


def phase_graph(ctx: Context, data: dict) -> None:
    two = ctx.two
    cases = [sampler(2, two, 1, mode, speed, graph, estimate, compare=graph)
             for mode, speed, estimate in (("reference", "faithful", 4), ("diffeomorphic", "faithful", 5),
                                           ("diffeomorphic", "fast", 2), ("diffeomorphic", "faster", 1.5))
             for graph in (False, True)]
    cases += [sampler(2, two, batch, "diffeomorphic", "fast", graph, 2.5) for batch in (2, 4, 8) for graph in (False, True)]
    if ctx.smoke:
        cases = [c for c in cases if c["speed"] == "fast" and c["batch"] <= 2]
    data.setdefault("rows", [])
    run_cases(ctx, data["rows"], cases, lambda case: sampler_case(case, ctx.device))


def phase_throughput(ctx: Context, data: dict) -> None:
    batch = 4 if ctx.smoke else 32
    data.update(authors_samples_per_s=AUTHORS_SAMPLES_PER_S, rows=[])
    run_cases(ctx, data["rows"], [sampler(2, ctx.two, batch, "reference", "faithful", False, 20, runs=2)],
              lambda case: sampler_case(case, ctx.device))


def phase_sampler_3d(ctx: Context, data: dict) -> None:
    cases = [sampler(3, ctx.big, 1, "reference", "faithful", False, 15),
             sampler(3, ctx.big, 1, "diffeomorphic", "faithful", False, 17),
             sampler(3, ctx.big, 1, "diffeomorphic", "fast", False, 6)]
    if ctx.smoke:
        cases = cases[:1]
    data.update(goal_faithful_s=GOAL_3D_FAITHFUL_S, rows=[])
    run_cases(ctx, data["rows"], cases, lambda case: sampler_case(case, ctx.device))


def phase_profile(ctx: Context, data: dict) -> None:
    data.update(profile_recovery_step(3, ctx.big, ctx.device))


def phase_precision(ctx: Context, data: dict) -> None:
    """tf32 against exact: speed and distance of the same seed's sample; field statistics over seeds."""
    two, big = ctx.two, ctx.big
    speed_cases = [sampler(2, two, 1, "diffeomorphic", "fast", True, 2, precision=p, compare=p == "tf32")
                   for p in ("exact", "tf32")]
    speed_cases += [sampler(3, big, 1, "diffeomorphic", "fast", False, 6 if p == "exact" else 9, precision=p,
                            compare=p == "tf32") for p in ("exact", "tf32")]
    if ctx.smoke:
        speed_cases = speed_cases[:2]
    data.setdefault("speed", [])
    run_cases(ctx, data["speed"], speed_cases, lambda case: sampler_case(case, ctx.device))
    seeds = 2 if ctx.smoke else 8
    data.update(seeds=seeds, statistics=[])
    model, image = sampler_model(2, two, ctx.device)
    for mode, speed, estimate in (("diffeomorphic", "fast", 3), ("reference", "faithful", 8)):
        row = {"model": model.name, "size": two, "mode": mode, "speed": speed}
        data["statistics"].append(row)
        if not ctx.smoke and ctx.left() < estimate:
            row["skipped"] = "budget"
            continue
        try:
            runs = {p: seed_statistics(model, image, seeds, mode, speed, p) for p in ("exact", "tf32")}
            difference = (runs["tf32"]["ddf"] - runs["exact"]["ddf"]).abs().flatten(1)
            row.update(exact=runs["exact"]["means"], tf32=runs["tf32"]["means"],
                       max_diff_vox_per_seed=[float(v) for v in difference.max(dim=1).values],
                       mean_diff_vox=float(difference.mean()))
        except Exception as error:
            row.update(error_text(error))
        ctx.save()
    later = [sampler(3, big, 1, "reference", "faithful", False, 15, precision="tf32"),
             sampler(2, two, 4 if ctx.smoke else 32, "reference", "faithful", False, 20, precision="tf32", runs=2)]
    if not ctx.smoke:
        run_cases(ctx, data["speed"], later, lambda case: sampler_case(case, ctx.device))


def phase_training(ctx: Context, data: dict) -> None:
    cases = [{"dims": 2, "size": ctx.two, "batch": 2 if ctx.smoke else 8, "precision": p, "steps": 2 if ctx.smoke else 10,
              "estimate_s": 20} for p in ("fp32", "bf16")]
    cases += [{"dims": 3, "size": ctx.three, "batch": 2, "precision": p, "steps": 2 if ctx.smoke else 10,
               "estimate_s": 20} for p in ("fp32", "bf16")]
    if ctx.smoke:  # bf16 on a CPU is slow
        cases = [c for c in cases if c["precision"] == "fp32"]
    data.setdefault("rows", [])
    run_cases(ctx, data["rows"], cases, lambda case: training_case(case, ctx.device, ctx.scratch))


def phase_zero_start(ctx: Context, data: dict) -> None:
    """Train 3D 64³ batch 2 from the zero start in chunks of about a minute while the budget (or
    ``--train-seconds``) lasts; each chunk ends with the recovery-error table on held-out phantoms."""
    rows = [r for r in ctx.report.get("training", {}).get("rows", [])
            if r["case"]["dims"] == 3 and "samples_per_s" in (r.get("result") or {})]
    if not rows:
        data["note"] = "no 3D training throughput measured: nothing to size the run with"
        return
    wanted = "bf16" if ctx.device.type == "cuda" else "fp32"
    rate = next((r["result"]["samples_per_s"] for r in rows if r["case"]["precision"] == wanted),
                rows[0]["result"]["samples_per_s"])
    batch, chunk_s = 2, (1.0 if ctx.smoke else 60.0)
    chunk = max(5 if ctx.smoke else 10, int(chunk_s * rate / batch))
    total_s = ctx.train_seconds if ctx.train_seconds is not None else float("inf")
    data.update(size=ctx.three, batch=batch, precision=wanted, chunk_steps=chunk, chunks=[])
    began, estimate, steps = time.perf_counter(), chunk_s + 15.0, 0
    out = ctx.scratch / "zero-start-3d"
    while ctx.left() > estimate and time.perf_counter() - began + (estimate if steps else 0) <= total_s:
        started = time.perf_counter()
        row = training_chunk(out, ctx.three, batch, steps + chunk, steps > 0, ctx.device)
        steps = row["steps"]
        estimate = time.perf_counter() - started
        row["seconds"] = round(time.perf_counter() - began, 1)
        data["chunks"].append(row)
        print(f"  zero start: {steps} steps, {row['seconds']} s, recovery error "
              f"{(row['recovery_error'] or {}).get('summary')}", flush=True)
        ctx.save()
    metrics = out / "metrics.csv"
    if metrics.is_file():
        data["metrics_csv"] = metrics.read_text(encoding="utf-8")


PHASES: list[tuple[str, str, float, Callable[[Context, dict], None]]] = [  # name, title, H100 estimate s, function
    ("gpu_tests", "GPU tests (Testing/engine/test_gpu.py)", 60, phase_gpu_tests),
    ("fidelity", "Fidelity to the reference vectors; one network call", 20, phase_fidelity),
    ("graph", "2D 256² samples: eager against the CUDA-graph step", 8, phase_graph),
    ("throughput", "2D 256² reference faithful throughput at batch 32", 20, phase_throughput),
    ("sampler_3d", "3D 128³ samples (reference architecture, random weights)", 15, phase_sampler_3d),
    ("profile", "Profile of one 3D 128³ recovery step", 10, phase_profile),
    ("precision", "Precision: tf32 against exact", 4, phase_precision),
    ("training", "Training throughput", 20, phase_training),
    ("zero_start", "3D 64³ training from the zero start", 30, phase_zero_start),
]


def save(report: dict, out: Path, began: float) -> None:
    """Write the report so far, JSON and Markdown (a run cut off by its time limit keeps what it measured)."""
    report["seconds"] = round(time.perf_counter() - began, 1)
    stem = f"gpu_{re.sub(r'[^A-Za-z0-9]+', '-', report['device_name']).strip('-').lower()}_{report['date']}"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    write_markdown(report, out / f"{stem}.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="no phase or case starts once its estimate no longer fits in this many seconds (default 420)")
    parser.add_argument("--phases", help=f"comma-separated subset, in this order: {','.join(p[0] for p in PHASES)}")
    parser.add_argument("--train-seconds", type=float, help="cap on the zero-start run (default: what the budget leaves)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: test this script (numbers mean nothing)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: PyTorch sees no CUDA GPU here (torch.cuda.is_available() is False)", flush=True)
        return 2
    chosen = [p for p in PHASES if args.phases is None or p[0] in args.phases.split(",")]
    device = torch.device(args.device)
    began = time.perf_counter()
    report = {"device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "date": dt.date.today().isoformat(), "budget_s": args.budget_s, "smoke": args.smoke,
              "machine": machine_description(), "phases": []}
    with tempfile.TemporaryDirectory() as scratch:
        ctx = Context(device, args.smoke, Path(scratch), began + args.budget_s, report,
                      lambda: save(report, args.out, began), args.train_seconds)
        for name, title, estimate, function in chosen:
            entry = {"name": name, "title": title, "estimate_s": estimate}
            report["phases"].append(entry)
            if not args.smoke and ctx.left() < estimate:
                entry["status"] = "skipped (budget)"
                ctx.save()
                continue
            print(f"gpu_check: {title}", flush=True)
            entry["status"], started = "running", time.perf_counter()
            data = report.setdefault(name, {})
            ctx.save()
            try:
                function(ctx, data)
                entry["status"] = "done"
            except Exception as error:  # the later phases still run
                entry["status"] = "failed"
                data.update(error_text(error))
            entry["seconds"] = round(time.perf_counter() - started, 1)
            ctx.save()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print(f"gpu_check: wrote the report under {args.out} in {report['seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
