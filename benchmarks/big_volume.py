"""A CT-sized volume (default 512×512×300, int16) deformed on the CPU: wall time, peak RSS, memory estimate.

The field is computed on the model's working grid; the field, its det J map, the statistics and the image
warp at full resolution are processed in slabs. Usage:
OMP_WAIT_POLICY=PASSIVE python benchmarks/big_volume.py [--shape 300 512 512] [--model random-field-3d]
Writes benchmarks/results/big_volume.json and .md.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import SimpleITK as sitk
import torch
from common import REPO, machine_description


def ct_like_volume(shape: tuple[int, int, int]) -> sitk.Image:
    """An int16 volume with CT-like values: air outside an elliptic body, soft tissue, a 'spine', noise."""
    z, y, x = (np.linspace(-1, 1, n, dtype=np.float32) for n in shape)
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij", sparse=True)
    body = (yy / 0.7) ** 2 + (xx / 0.9) ** 2 <= 1.0
    volume = np.full(shape, -1000, dtype=np.int16)
    volume[np.broadcast_to(body, shape)] = 40
    spine = ((yy - 0.45) / 0.12) ** 2 + (xx / 0.1) ** 2 <= 1.0
    volume[np.broadcast_to(spine, shape)] = 700
    volume += (np.random.default_rng(0).standard_normal(shape) * 20).astype(np.int16)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.7, 0.7, 1.0))
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512), help="array shape (z, y, x)")
    parser.add_argument("--model", default="random-field-3d")
    parser.add_argument("--speed", default="fast")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from drdm.model_store.loading import load_model_spec
    from drdm.physical.deform import check_memory, deform_image, estimate_memory_bytes
    from drdm.physical.geometry import plan_working_grid
    from drdm.settings import DeformationSettings

    model = load_model_spec(args.model)
    image = ct_like_volume(tuple(args.shape))
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    grid = plan_working_grid(tuple(args.shape), (1.0, 0.7, 0.7), model.ndims, model.size)
    estimate = estimate_memory_bytes(grid)
    check_memory(grid)
    start = time.perf_counter()
    result = deform_image(model, image, settings=DeformationSettings(level=40, seed=0, speed=args.speed))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    voxels = int(np.prod(args.shape))
    report = {
        "shape_zyx": list(args.shape), "voxels": voxels, "model": model.name, "model_grid": model.size, "speed": args.speed,
        "seconds": round(seconds, 1), "peak_rss_gib": round(peak / 2**30, 2),
        "rss_before_gib": round(baseline / 2**30, 2), "estimate_gib": round(estimate / 2**30, 2),
        "peak_bytes_per_voxel": round(peak / voxels, 1),
        "mean_mm": round(result.statistics["mean_mm"], 2), "folding_fraction": result.statistics["folding_fraction"],
        "machine": machine_description(),
    }
    out = REPO / "benchmarks" / "results"
    (out / "big_volume.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    md = ["# CT-sized volume on the CPU", "",
          f"Volume {args.shape[2]}×{args.shape[1]}×{args.shape[0]} int16 ({voxels / 1e6:.1f} M voxels), model "
          f"{model.name} ({model.size}³ working grid), speed {args.speed}; machine: {report['machine']['cpu']}, "
          f"{report['machine']['torch_threads']} threads.", "",
          "| wall s | peak RSS GiB | estimate GiB (checked before running) | peak bytes / voxel | mean |u| mm | folding |",
          "|---|---|---|---|---|---|",
          f"| {report['seconds']} | {report['peak_rss_gib']} | {report['estimate_gib']} | {report['peak_bytes_per_voxel']} | "
          f"{report['mean_mm']} | {report['folding_fraction']:.2e} |", ""]
    (out / "big_volume.md").write_text("\n".join(md), encoding="utf-8")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
