"""Reference vs topology-preserving sampler over many seeds on the CMR sample (issue: engine, item 7).

Usage: python benchmarks/diffeomorphic_table.py [--seeds 16] [--level 56]
Writes benchmarks/results/diffeomorphic_table.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from common import REPO, machine_description, published_model_and_sample
from drdm.sampler import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--level", type=int, default=56)
    args = parser.parse_args()
    model, image = published_model_and_sample()
    rows: dict[str, list[dict[str, float]]] = {"reference": [], "diffeomorphic": []}
    for seed in range(args.seeds):
        for mode in rows:
            result = generate(model, image, speed="faithful", start_level=args.level, mode=mode,
                              generator=torch.Generator().manual_seed(seed))
            s = result.statistics
            rows[mode].append({key: s[key][0] for key in
                               ("folding_fraction_interior", "folding_fraction", "mean_vox", "p95_vox", "det_min", "det_max")})
            print(mode, seed, {k: round(v, 5) for k, v in rows[mode][-1].items()}, flush=True)
    summary = {mode: {key: {"mean": statistics.fmean(r[key] for r in runs), "min": min(r[key] for r in runs),
                            "max": max(r[key] for r in runs)} for key in runs[0]} for mode, runs in rows.items()}
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    payload = {"level": args.level, "seeds": args.seeds, "machine": machine_description(), "runs": rows, "summary": summary}
    (out / "diffeomorphic_table.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    lines = [f"# Reference vs diffeomorphic sampler, CMR sample, T' = {args.level}, {args.seeds} seeds", "",
             "| mode | folding interior % (mean / max) | mean abs u px | p95 abs u px | det J min |", "|---|---|---|---|---|"]
    for mode, s in summary.items():
        lines.append(f"| {mode} | {100 * s['folding_fraction_interior']['mean']:.3f} / "
                     f"{100 * s['folding_fraction_interior']['max']:.3f} | {s['mean_vox']['mean']:.2f} | "
                     f"{s['p95_vox']['mean']:.2f} | {s['det_min']['min']:.4f} |")
    ratio = summary["diffeomorphic"]["mean_vox"]["mean"] / summary["reference"]["mean_vox"]["mean"]
    lines += ["", f"mean |u| ratio diffeomorphic / reference: {ratio:.3f}"]
    (out / "diffeomorphic_table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
