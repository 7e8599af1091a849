"""Steering a deformation: asked vs reached size, shape agreement, folding, and regions held still.

Inputs: the ACDC stack (cmr-2d, coherent slices), the authors' preprocessed slice ``OpenDataset_162867`` (cmr-2d) and
an oblique 3D cardiac phantom (random-field-3d), diffeomorphic mode, ``--speed`` (default faster), seeds 0 … n-1.
For each seed one sample is generated with its path recorded, then replayed by :func:`drdm.physical.steering.steer`
at every size (the code path of ``drdm generate --magnitude``, without writing files): sizes 0.5, 2 and 5 mm and
1.25× / 1.5× the model's own size. Shape agreement: cosine similarity of the field at that size with the model's
own field (1 = the same shape). Folding: det J ≤ 0 on the input's grid (central differences, the engine's
statistics). Regions on the ACDC stack: keep the left-ventricle blood pool (label 3) or deform only the myocardium
(label 2), default margin: the largest |u| where held and the mean |u| far from the structure against the
unconstrained field of the same seed.
Usage: python benchmarks/steering.py [--seeds 3] [--speed faster] [--threads 2]
Writes benchmarks/results/steering.{json,md}.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import SimpleITK as sitk
import torch
from common import SHARED, write_results
from drdm.field_statistics import jacobian_statistics
from drdm.model_store.loading import load_model
from drdm.physical.geometry import plan_working_grid
from drdm.physical.io import image_array, read_image, spacing_array_order
from drdm.physical.steering import SteeringError, plan_regions, steer
from drdm.sampler import generate
from drdm.settings import DEFAULTS
from drdm.slice_stack import slice_stack
from drdm.training.phantoms import cardiac_phantom
from scipy.ndimage import distance_transform_edt

CMR = SHARED / "data" / "cmr"
SIZES_MM = (0.5, 2.0, 5.0)
SIZE_FACTORS = (1.25, 1.5)


def oblique_phantom() -> sitk.Image:
    """A 3D cardiac phantom, 48³ voxels of 1.5 mm, rotated 30° about z and 20° about x (oblique direction)."""
    array = cardiac_phantom(48, 3, seed=2)[0][0, 0].numpy()
    image = sitk.GetImageFromArray((array * 400).astype(np.float32))
    image.SetSpacing((1.5, 1.5, 1.5))
    rotation = sitk.Euler3DTransform()
    rotation.SetRotation(np.deg2rad(20), 0.0, np.deg2rad(30))
    image.SetDirection(rotation.GetMatrix())
    return image


def recorded_sample(model, image: sitk.Image, seed: int, speed: str):
    """One diffeomorphic sample with its path, and what steer needs."""
    array = image_array(image)
    spacing = spacing_array_order(image)
    grid = plan_working_grid(tuple(array.shape), spacing, model.ndims, model.size)
    sliced = grid.slice_axis is not None
    stack = slice_stack(DEFAULTS.slices, grid.batch if sliced else None,
                        grid.spacing[grid.slice_axis] / grid.working_spacing if sliced else 1.0)
    working = grid.to_working(array)
    process = model.forward_process()
    result = generate(model, working, start_level=process.first_level, generator=torch.Generator().manual_seed(seed),
                      mode="diffeomorphic", speed=speed, stack=stack, record_path=True)
    return result, grid


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


def size_rows(name: str, model, image: sitk.Image, seeds: list[int], speed: str) -> list[dict]:
    rows = []
    for seed in seeds:
        result, grid = recorded_sample(model, image, seed, speed)
        own = steer(result, grid)
        natural = own.statistics["natural_mm"]
        for size in list(SIZES_MM) + [math.floor(100 * f * natural) / 100 for f in SIZE_FACTORS]:
            started = time.perf_counter()
            try:
                field = steer(result, grid, magnitude=size)
            except SteeringError as error:
                rows.append({"input": name, "seed": seed, "asked_mm": size, "natural_mm": natural, "error": str(error)})
                print(rows[-1], flush=True)
                continue
            reached = field.statistics["size_reached_mm"]
            jac = jacobian_statistics(field.ddf)
            rows.append({"input": name, "seed": seed, "asked_mm": size, "natural_mm": natural, "reached_mm": reached,
                         "relative_error": reached / size - 1, "cosine_with_own": _cosine(field.ddf, own.ddf),
                         "folding_fraction": jac["folding_fraction"][0], "det_min": jac["det_min"][0],
                         "scale": field.statistics["size_scale"], "seconds": time.perf_counter() - started})
            print(rows[-1], flush=True)
    return rows


def region_rows(model, image: sitk.Image, labels: sitk.Image, seeds: list[int], speed: str) -> list[dict]:
    label_array = sitk.GetArrayFromImage(labels)
    spacing = spacing_array_order(image)
    rows = []
    for seed in seeds:
        result, grid = recorded_sample(model, image, seed, speed)
        free = steer(result, grid).ddf
        free_mm = _magnitude_mm(free, spacing)
        for kind, value in (("keep", 3), ("only", 2)):
            regions = plan_regions(label_array, spacing, keep=(value,) if kind == "keep" else (),
                                   only=(value,) if kind == "only" else (), margin=DEFAULTS.margin)
            field = steer(result, grid, regions=regions)
            steered_mm = _magnitude_mm(field.ddf, spacing)
            distance = distance_transform_edt(label_array != value, sampling=spacing)
            far = distance > 40 if kind == "keep" else distance < 0.5  # away from the kept / inside the only one
            jac = jacobian_statistics(field.ddf)
            held = field.statistics.get("max_mm_in_kept", field.statistics.get("max_mm_outside_region"))
            rows.append({"seed": seed, "region": f"{kind} {value}", "margin_mm": DEFAULTS.margin, "held_max_mm": held,
                         "allowed_mean_mm": field.statistics["size_reached_mm"],
                         "far_ratio": float(steered_mm[far].mean() / free_mm[far].mean()),
                         "folding_fraction": jac["folding_fraction"][0], "det_min": jac["det_min"][0]})
            print(rows[-1], flush=True)
    return rows


def _magnitude_mm(ddf: torch.Tensor, spacing) -> np.ndarray:
    scale = torch.tensor(spacing, dtype=torch.float64).reshape((1, len(spacing)) + (1,) * len(spacing))
    return (ddf.double() * scale).pow(2).sum(1).sqrt()[0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--speed", default="faster")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    cmr = load_model("cmr-2d", "cpu")
    stack = read_image(CMR / "patient001_frame01.nii.gz")
    stack_labels = read_image(CMR / "patient001_frame01_gt.nii.gz")
    rows = size_rows("ACDC stack (cmr-2d, coherent)", cmr, stack, seeds, args.speed)
    rows += size_rows("authors' slice OpenDataset_162867 (cmr-2d)", cmr, read_image(CMR / "OpenDataset_162867.nii.gz"),
                      seeds, args.speed)
    rows += size_rows("oblique 3D phantom (random-field-3d)", load_model("random-field-3d", "cpu"), oblique_phantom(),
                      seeds, args.speed)
    regions = region_rows(cmr, stack, stack_labels, seeds, args.speed)
    lines = [f"# Steering: asked vs reached size, shape, folding, regions ({args.speed}, seeds {seeds})", "",
             "| input | seed | own size (mm) | asked (mm) | reached (mm) | error | cosine with own field | folding | "
             "det J min |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['input']} | {r['seed']} | {r['natural_mm']:.2f} | {r['asked_mm']:g} | refused: "
                         f"{r['error']} | | | | |")
        else:
            lines.append(f"| {r['input']} | {r['seed']} | {r['natural_mm']:.2f} | {r['asked_mm']:g} | "
                         f"{r['reached_mm']:.2f} | {100 * r['relative_error']:+.1f} % | {r['cosine_with_own']:.3f} | "
                         f"{r['folding_fraction']:.5f} | {r['det_min']:.3f} |")
    ok = [r for r in rows if "error" not in r]
    lines += ["", f"Reached: {len(ok)} of {len(rows)} asks; largest |error| "
                  f"{100 * max(abs(r['relative_error']) for r in ok):.2f} %; median cosine with the own field "
                  f"{statistics.median(r['cosine_with_own'] for r in ok):.3f} (min "
                  f"{min(r['cosine_with_own'] for r in ok):.3f}); folding voxels in all: "
                  f"{sum(r['folding_fraction'] > 0 for r in ok)} fields.", "",
              "| ACDC stack, seed | region (margin) | largest \\|u\\| where held (mm) | mean \\|u\\| where allowed (mm) | "
              "far / unconstrained | folding | det J min |", "|---|---|---|---|---|---|---|"]
    for r in regions:
        lines.append(f"| {r['seed']} | {r['region']} ({r['margin_mm']:g} mm) | {r['held_max_mm']:.4f} | "
                     f"{r['allowed_mean_mm']:.2f} | {r['far_ratio']:.3f} | {r['folding_fraction']:.5f} | "
                     f"{r['det_min']:.3f} |")
    lines += ["", "far / unconstrained: keep: mean |u| more than 40 mm from the kept structure; only: inside the "
                  "structure; each against the same seed's unconstrained field."]
    write_results("steering", {"sizes": rows, "regions": regions, "speed": args.speed, "seeds": seeds}, lines)


if __name__ == "__main__":
    main()
