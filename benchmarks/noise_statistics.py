"""Forward-process statistics per level against noise_stats.json (all levels, 2D and 3D).

Usage: python benchmarks/noise_statistics.py [--configs 2d_256 3d_64]
Writes benchmarks/results/noise_statistics.{json,md}: ratio ours / reference of each statistic's mean.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from common import REPO, SHARED, machine_description
from drdm.noise import ForwardProcess
from drdm.spatial import jacobian_determinant

PRESET = {"2d_256": "cmr-2d", "3d_64": "lct-3d"}


def statistics_of(field: torch.Tensor) -> dict[str, float]:
    u = field[0].double().numpy()
    magnitude = np.sqrt((u**2).sum(0))
    det = jacobian_determinant(field.double())[0].numpy()
    return {"mean_mag_vox": float(magnitude.mean()), "p95_mag_vox": float(np.percentile(magnitude, 95)),
            "frac_detJ_le0": float((det <= 0).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", nargs="+", default=["2d_256", "3d_64"])
    args = parser.parse_args()
    stats = json.loads((SHARED / "reference" / "noise_stats.json").read_text(encoding="utf-8"))["configs"]
    results: dict[str, dict] = {}
    for name in args.configs:
        meta = stats[name]["meta"]
        process = ForwardProcess.from_preset(PRESET[name])
        sizes = [meta["image_size"]] + ([128] if name == "3d_64" else [])
        for t in stats[name]["per_t"]:
            draws = {(s, f): [] for s in sizes for f in ("warp", "target")}
            for k in range(meta["n_draws"]):
                generator = torch.Generator().manual_seed(meta["seed_base"] + 1000 * int(t) + k)
                fields = process.control_fields(int(t), process.draw_normals(1, generator))
                for s in sizes:
                    draws[(s, "warp")].append(statistics_of(process.lift(fields.warp, s)))
                    draws[(s, "target")].append(statistics_of(process.lift(fields.target, s)))
            for s in sizes:
                config = name if s == meta["image_size"] else "3d_128"
                for field in ("warp", "target"):
                    ref = stats[config]["per_t"][t][field]
                    row = {}
                    for stat in ("mean_mag_vox", "p95_mag_vox", "frac_detJ_le0"):
                        ours = float(np.mean([d[stat] for d in draws[(s, field)]]))
                        row[stat] = {"ours": ours, "reference": ref[stat][0],
                                     "ratio": ours / ref[stat][0] if ref[stat][0] else None}
                    results.setdefault(config, {}).setdefault(t, {})[field] = row
                    print(config, t, field, {k: (round(v["ratio"], 4) if v["ratio"] else v["ours"]) for k, v in row.items()},
                          flush=True)
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine_description(), "results": results}
    (out / "noise_statistics.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    lines = ["# Forward process: ours / reference (mean over the reference's draws and seeds)", "",
             "| config | t | warp mean | warp p95 | warp fold | target mean | target p95 | target fold |",
             "|---|---|---|---|---|---|---|---|"]
    for config, per_t in results.items():
        for t, fields in per_t.items():
            cells = []
            for field in ("warp", "target"):
                for stat in ("mean_mag_vox", "p95_mag_vox", "frac_detJ_le0"):
                    v = fields[field][stat]
                    cells.append(f"{v['ratio']:.4f}" if v["ratio"] is not None else f"(0 vs {v['ours']:.2g})")
            lines.append(f"| {config} | {t} | " + " | ".join(cells) + " |")
    (out / "noise_statistics.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
