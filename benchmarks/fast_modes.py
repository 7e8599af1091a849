"""Every rung of the speed ladder (faithful, fast, faster) vs faithful on the CMR sample, for both sampler modes, over many seeds.

For each mode: median seconds per 2D 256² sample (faithful and fast), the speed-up, and the change of the
field statistics (mean and p95 |u|, interior folding, det J range) averaged over the seeds.

Usage: OMP_WAIT_POLICY=PASSIVE python benchmarks/fast_modes.py [--seeds 16] [--level 56] [--threads 2] [--modes diffeomorphic]
Writes benchmarks/results/fast_modes.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from common import REPO, machine_description, published_model_and_sample
from drdm.sampler import LADDER, MODES, SPEEDS, generate

KEYS = ("mean_vox", "p95_vox", "folding_fraction_interior", "det_min", "det_max")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--level", type=int, default=56)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, image = published_model_and_sample()
    generate(model, image, mode="reference", speed="faithful", statistics=True, start_level=args.level, levels=[0])  # warm-up
    runs = {(mode, speed): [] for mode in args.modes for speed in LADDER}
    for seed in range(args.seeds):
        for (mode, speed), rows in runs.items():
            start = time.perf_counter()
            result = generate(model, image, statistics=True, start_level=args.level, mode=mode, speed=speed,
                              generator=torch.Generator().manual_seed(1000 + seed))
            seconds = time.perf_counter() - start
            rows.append({"seconds": seconds, **{k: result.statistics[k][0] for k in KEYS}})
            print(mode, speed, seed, {k: round(v, 4) for k, v in rows[-1].items()}, flush=True)
    summary = {}
    for (mode, speed), rows in runs.items():
        summary[f"{mode}/{speed}"] = {
            "median_seconds": statistics.median(r["seconds"] for r in rows),
            "min_seconds": min(r["seconds"] for r in rows), "max_seconds": max(r["seconds"] for r in rows),
            **{k: statistics.fmean(r[k] for r in rows) for k in KEYS},
            "max_folding": max(r["folding_fraction_interior"] for r in rows),
            "min_det": min(r["det_min"] for r in rows), "max_det": max(r["det_max"] for r in rows),
        }
    offered = {f"{m}/{s}": s == "faithful" or _within_band(summary[f"{m}/faithful"], summary[f"{m}/{s}"])
               for m in args.modes for s in LADDER}
    lines = [f"# Speed ladder vs faithful, CMR sample (net_x), T' = {args.level}, {args.seeds} seeds, {args.threads} threads", "",
             "| mode/speed | median s/sample (min–max) | speed-up | mean abs u px | p95 abs u px | folding interior % "
             "| det J min | det J max | within band | offered (SPEEDS) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for mode in args.modes:
        base = summary[f"{mode}/faithful"]
        for speed in LADDER:
            s = summary[f"{mode}/{speed}"]
            ratio = base["median_seconds"] / s["median_seconds"]
            change = "" if speed == "faithful" else (f" ({100 * (s['mean_vox'] / base['mean_vox'] - 1):+.1f} %)")
            change95 = "" if speed == "faithful" else (f" ({100 * (s['p95_vox'] / base['p95_vox'] - 1):+.1f} %)")
            lines.append(f"| {mode}/{speed} | {s['median_seconds']:.2f} ({s['min_seconds']:.2f}–{s['max_seconds']:.2f}) | "
                         f"{ratio:.2f}× | {s['mean_vox']:.2f}{change} | {s['p95_vox']:.2f}{change95} | "
                         f"{100 * s['folding_fraction_interior']:.3f} | {s['det_min']:.3f} | {s['det_max']:.2f} | "
                         f"{'yes' if offered[f'{mode}/{speed}'] else 'no'} | {'yes' if speed in SPEEDS else 'no'} |")
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    lines += ["", "Band: mean and p95 |u| within 10 % of faithful and no interior folding in any seed."]
    payload = {"args": vars(args), "machine": machine_description(), "summary": summary, "within_band": offered,
               "runs": {f"{m}/{s}": r for (m, s), r in runs.items()}}
    (out / "fast_modes.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    machine = json.dumps(machine_description())
    (out / "fast_modes.md").write_text("\n".join(lines) + f"\n\nMachine: {machine}\n", encoding="utf-8")
    print("\n".join(lines))


def _within_band(base: dict, rung: dict) -> bool:
    """The offer rule: mean and p95 |u| within 10 % of faithful, and no folding (max over seeds is 0)."""
    return (abs(rung["mean_vox"] / base["mean_vox"] - 1) <= 0.10 and abs(rung["p95_vox"] / base["p95_vox"] - 1) <= 0.10
            and rung["max_folding"] == 0.0)


if __name__ == "__main__":
    main()
