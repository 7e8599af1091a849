"""Coherent vs independent slices: a 2D model (cmr-2d) deforming volumes, on a near-isotropic phantom and the ACDC
stack, at the ``fast`` and ``faster`` rungs, same seeds for both choices.

Figures per case (median and range over seeds): through-plane / in-plane roughness ratio (mean |u(k+1) − u(k)| /
spacing along the slices over the in-plane mean; 1 for an isotropic 3D field), mean |u| in mm (and its ratio to
``independent`` at the same seed), folding by SimpleITK's 3D det J, seconds (ratio to ``independent``, runs
alternating). Then the recovery error of cmr-2d on the ACDC slices with coherent vs independent forward draws
(levels 10/30/50/70, the definition of drdm.training.recovery_error).
Usage: python benchmarks/slice_coherence.py [--seeds 3] [--threads 2]
Writes benchmarks/results/slice_coherence.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import SimpleITK as sitk
import torch
from common import SHARED, write_results
from drdm.model_store.loading import load_model
from drdm.physical.deform import deform_image
from drdm.physical.geometry import plan_working_grid
from drdm.physical.io import image_array, read_image, spacing_array_order
from drdm.settings import DeformationSettings  # noqa: E402
from drdm.slice_stack import SliceStack
from drdm.spatial import warp
from drdm.training.losses import relative_recovery_error
from drdm.training.phantoms import cardiac_phantom
from drdm.training.recovery_error import LEVELS

ACDC = SHARED / "data" / "cmr" / "patient001_frame01.nii.gz"


def near_isotropic_phantom(slices: int = 40, size: int = 64, spacing: float = 1.2) -> sitk.Image:
    """The volume of the issue: ``slices`` × ``size`` × ``size`` voxels of ``spacing`` mm (a 3D cardiac phantom)."""
    array = cardiac_phantom(size, 3, seed=1)[0][0, 0, (size - slices) // 2:(size - slices) // 2 + slices].numpy()
    image = sitk.GetImageFromArray((array * 500).astype(np.int16))
    image.SetSpacing((spacing,) * 3)
    return image


def folding_fraction_itk(field: sitk.Image) -> float:
    """Fraction of voxels with det J ≤ 0 by SimpleITK's 3D filter (axis-aligned volumes only: it ignores direction)."""
    det = sitk.GetArrayViewFromImage(sitk.DisplacementFieldJacobianDeterminant(field))
    return float((det <= 0).mean())


def run_case(model, image: sitk.Image, speed: str, seeds: list[int]) -> dict:
    rows = {"coherent": [], "independent": []}
    for seed in seeds:
        for slices in ("independent", "coherent") if seed % 2 else ("coherent", "independent"):
            started = time.perf_counter()
            result = deform_image(model, image, settings=DeformationSettings(level=model.forward_process().first_level,
                seed=seed, speed=speed, slices=slices))
            seconds = time.perf_counter() - started
            s = result.statistics
            rows[slices].append({"seed": seed, "ratio": s["through_plane_roughness_ratio"],
                                 "through": s["through_plane_mm_per_mm"], "in_plane": s["in_plane_mm_per_mm"],
                                 "mean_mm": s["mean_mm"], "p95_mm": s["p95_mm"],
                                 "folding_itk": folding_fraction_itk(result.field), "seconds": seconds})
            print(f"  {speed} seed {seed} {slices}: ratio {s['through_plane_roughness_ratio']:.2f}, mean |u| "
                  f"{s['mean_mm']:.2f} mm, {seconds:.1f} s", flush=True)
    return rows


def summarise(rows: dict) -> dict:
    coherent, independent = rows["coherent"], rows["independent"]
    magnitude = [c["mean_mm"] / i["mean_mm"] for c, i in zip(coherent, independent)]
    seconds = [c["seconds"] / i["seconds"] for c, i in zip(coherent, independent)]
    out = {}
    for name, values in (("coherent", coherent), ("independent", independent)):
        ratios = [v["ratio"] for v in values]
        out[name] = {"ratio_median": statistics.median(ratios), "ratio_max": max(ratios), "ratio_min": min(ratios),
                     "mean_mm": statistics.mean(v["mean_mm"] for v in values),
                     "folding_itk_max": max(v["folding_itk"] for v in values),
                     "seconds_median": statistics.median(v["seconds"] for v in values)}
    out["magnitude_ratio_mean_over_seeds"] = out["coherent"]["mean_mm"] / out["independent"]["mean_mm"]
    out["magnitude_ratio_per_seed"] = [min(magnitude), max(magnitude)]
    out["time_ratio_median"] = statistics.median(seconds)
    return out


@torch.no_grad()
def recovery_errors(model, image: sitk.Image, draws: int) -> dict:
    """Mean recovery error of ``model`` on the working slices of ``image``, coherent vs independent forward draws."""
    array = image_array(image)
    grid = plan_working_grid(tuple(array.shape), spacing_array_order(image), 2, model.size)
    slices = grid.to_working(array)  # (B, 1, S, S), per-slice min-max, as the sampler sees them
    stack = SliceStack.regular(grid.batch, grid.spacing[grid.slice_axis] / grid.working_spacing)
    process = model.forward_process()
    out = {}
    for mode, coherent in (("coherent", stack), ("independent", None)):
        per_level = {}
        for level in LEVELS:
            values = []
            for draw in range(draws):
                generator = torch.Generator().manual_seed(1000 * level + draw)
                ddf_warp, ddf_target = process.sample(level, model.size, batch=grid.batch, generator=generator,
                                                      stack=coherent)
                moved = warp(slices, ddf_warp, "linear", "zeros")
                prediction = model.network(moved, level, rec_num=2)
                aligned = warp(prediction, ddf_target, "linear", process.composition_padding)
                values += relative_recovery_error(aligned, ddf_target / model.size).tolist()
            per_level[level] = statistics.mean(values)
        out[mode] = {"levels": per_level, "mean": statistics.mean(per_level.values())}
    out["ratio"] = out["coherent"]["mean"] / out["independent"]["mean"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("cmr-2d", "cpu")
    seeds = list(range(args.seeds))
    volumes = [("near-isotropic phantom 40×64×64, 1.2 mm", near_isotropic_phantom())]
    if ACDC.is_file():
        volumes.append(("ACDC patient001 ED, 10 slices of 1.56 mm × 10 mm", read_image(ACDC)))
    cases = []
    for name, image in volumes:
        for speed in ("fast", "faster"):
            print(f"{name}, {speed}", flush=True)
            rows = run_case(model, image, speed, seeds)
            cases.append({"volume": name, "speed": speed, "rows": rows, "summary": summarise(rows)})
    recovery = recovery_errors(model, read_image(ACDC), args.draws) if ACDC.is_file() else None
    lines = ["# Coherent vs independent slices (cmr-2d, diffeomorphic)", "",
             f"Seeds {seeds}, both choices at every seed (alternating order). Ratio = through-plane / in-plane "
             "roughness (1 for an isotropic 3D field); |u| ratio = coherent / independent mean |u|; folding by "
             "SimpleITK's 3D det J.", "",
             "| volume | rung | ratio coherent (median, range) | ratio independent (median) | mean |u| coherent / "
             "independent (mm) | |u| ratio over seeds (per seed) | folding (max) | time ratio (median) |",
             "|---|---|---|---|---|---|---|---|"]
    for case in cases:
        s = case["summary"]
        c, i = s["coherent"], s["independent"]
        lines.append(f"| {case['volume']} | {case['speed']} | "
                     f"{c['ratio_median']:.2f} ({c['ratio_min']:.2f}–{c['ratio_max']:.2f}) | "
                     f"{i['ratio_median']:.2f} | {c['mean_mm']:.2f} / {i['mean_mm']:.2f} | "
                     f"{s['magnitude_ratio_mean_over_seeds']:.2f} ({s['magnitude_ratio_per_seed'][0]:.2f}–"
                     f"{s['magnitude_ratio_per_seed'][1]:.2f}) | {max(c['folding_itk_max'], i['folding_itk_max']):.4f} | "
                     f"{s['time_ratio_median']:.2f} |")
    if recovery is not None:
        levels = " / ".join(str(t) for t in LEVELS)
        lines += ["", f"Recovery error of cmr-2d on the ACDC slices (levels {levels}, {args.draws} draws each, all 10 "
                  "slices): " + ", ".join(f"{mode} {' / '.join(f'{v:.3f}' for v in recovery[mode]['levels'].values())} "
                                          f"(mean {recovery[mode]['mean']:.3f})" for mode in ("coherent", "independent"))
                  + f"; ratio {recovery['ratio']:.3f}"]
    write_results("slice_coherence", {"seeds": seeds, "cases": cases, "recovery_error": recovery}, lines)


if __name__ == "__main__":
    main()
