"""The truth about levels: mean |u| (mm) against the start level T′, per model and input, over seeds.

The sampler always runs all its recovery steps told t = T−1 first (SPEC §5), whatever T′ is, so T′ sets the starting
noise of the recovery, not the size of the result: this script measures how much the size moves with T′. Inputs:
the authors' preprocessed slice ``OpenDataset_162867`` (cmr-2d and random-field-2d), the ACDC stack (cmr-2d, coherent
slices) and a 3D cardiac phantom (random-field-3d); diffeomorphic mode, ``--speed`` (default faster).
Usage: python benchmarks/level_sizes.py [--seeds 3] [--speed faster] [--levels 8 16 32 48 64]
Writes benchmarks/results/level_sizes.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import SimpleITK as sitk
import torch
from common import SHARED, write_results
from drdm.model_store.loading import load_model
from drdm.physical.deform import deform_image
from drdm.physical.io import read_image
from drdm.settings import DeformationSettings  # noqa: E402
from drdm.training.phantoms import cardiac_phantom

CMR = SHARED / "data" / "cmr"


def phantom_3d() -> sitk.Image:
    """A 3D cardiac phantom, 48³ voxels of 1.5 mm."""
    image = sitk.GetImageFromArray((cardiac_phantom(48, 3, seed=2)[0][0, 0].numpy() * 400).astype(np.float32))
    image.SetSpacing((1.5, 1.5, 1.5))
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--speed", default="faster")
    parser.add_argument("--levels", type=int, nargs="+", default=[8, 16, 32, 48, 64])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    slice_ = read_image(CMR / "OpenDataset_162867.nii.gz")
    cases = [("cmr-2d", "authors' slice OpenDataset_162867", slice_),
             ("random-field-2d", "authors' slice OpenDataset_162867", slice_),
             ("cmr-2d", "ACDC stack patient001 (coherent slices)", read_image(CMR / "patient001_frame01.nii.gz")),
             ("random-field-3d", "3D cardiac phantom 48³ × 1.5 mm", phantom_3d())]
    rows = []
    for model_name, input_name, image in cases:
        model = load_model(model_name, "cpu")
        for level in args.levels:
            sizes = [deform_image(model, image, settings=DeformationSettings(level=level, seed=seed,
                speed=args.speed)).statistics["mean_mm"]
                     for seed in range(args.seeds)]
            rows.append({"model": model_name, "input": input_name, "level": level, "mean_mm": sizes})
            print(rows[-1], flush=True)
    lines = [f"# Mean |u| (mm) against the start level T′ (diffeomorphic, {args.speed}, seeds 0–{args.seeds - 1})", "",
             "| model | input | " + " | ".join(f"T′ = {t}" for t in args.levels) + " |",
             "|---|---|" + "---|" * len(args.levels)]
    for model_name, input_name, _ in cases:
        cells = []
        for level in args.levels:
            sizes = next(r["mean_mm"] for r in rows if (r["model"], r["input"], r["level"]) == (model_name, input_name, level))
            cells.append(f"{statistics.median(sizes):.1f} ({min(sizes):.1f}–{max(sizes):.1f})")
        lines.append(f"| {model_name} | {input_name} | " + " | ".join(cells) + " |")
    lines += ["", "Median (range) over seeds. In diffeomorphic mode the size grows with T′ up to about 32 and then "
                  "stays flat (the fold-free forward field is capped there; the recovery does not add size), for the "
                  "learned model and the random field alike; above 32 the level changes the draw, not its size. The "
                  "authors' reference sampler is flat from T′ = 8 (6–10 mm on the authors' slice, DESIGN.md). Neither "
                  "gives a size a user can ask for: use --magnitude (docs/steering.md)."]
    write_results("level_sizes", {"rows": rows, "speed": args.speed, "levels": args.levels}, lines)


if __name__ == "__main__":
    main()
