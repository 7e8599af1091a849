"""Baseline table for registration studies: SimpleITK registrations scored by ``drdm evaluate``.

Pairs (``drdm synthesize --inverse``, diffeomorphic, fast): the mid short-axis slice of ACDC patient001 (end
diastole, with its expert labels; ../shared/data/cmr) deformed by the bundled ``cmr-2d`` model, and a 3D cardiac
phantom (64³, 1.5 mm) deformed by ``random-field-3d``. Each pair is registered (moving onto fixed) by:

- ``identity``: no registration (the size of the problem);
- ``demons``: SimpleITK diffeomorphic demons on histogram-matched images (a displacement field);
- ``bspline_mi``: SimpleITK B-spline (mesh 8 per axis) with Mattes mutual information, 3 resolution levels, L-BFGS-B.

Each result is written as ``{pair}/<method>.h5`` with ``<method>.h5.time.txt`` and scored with
:func:`drdm.evaluate`. Also recorded: the ground truth's inverse consistency (``--inverse``).
Usage: python benchmarks/registration_baselines.py [--pairs 4] [--pairs-3d 3] [--work DIR]  (the same --work resumes)
Writes benchmarks/results/registration_baselines.{json,md} and one per-pair picture per data set and method.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import drdm
import numpy as np
import SimpleITK as sitk
import torch
from common import REPO, SHARED, machine_description
from drdm.cli import main as drdm_main
from drdm.training.phantoms import cardiac_phantom

RESULTS = REPO / "benchmarks" / "results"
METHODS = ("identity", "demons", "bspline_mi")


def cmr_slice(folder: Path) -> tuple[Path, Path]:
    """The mid slice of ACDC patient001 end-diastole (216×256, 1.5625 mm) and its labels, as 2D files."""
    image = sitk.ReadImage(str(SHARED / "data" / "cmr" / "patient001_frame01.nii.gz"), sitk.sitkFloat32)
    labels = sitk.ReadImage(str(SHARED / "data" / "cmr" / "patient001_frame01_gt.nii.gz"))
    middle = image.GetSize()[2] // 2
    paths = folder / "acdc001_ed_mid.nii.gz", folder / "acdc001_ed_mid_gt.nii.gz"
    sitk.WriteImage(image[:, :, middle], str(paths[0]))
    sitk.WriteImage(labels[:, :, middle], str(paths[1]))
    return paths


def phantom_volume(folder: Path) -> tuple[Path, Path]:
    array, labels = cardiac_phantom(64, 3, seed=0)
    image = sitk.GetImageFromArray(array[0, 0].numpy().astype(np.float32))
    image.SetSpacing((1.5, 1.5, 1.5))
    label_image = sitk.GetImageFromArray(labels[0, 0].numpy().astype(np.uint8))
    label_image.CopyInformation(image)
    paths = folder / "phantom3d.nii.gz", folder / "phantom3d_gt.nii.gz"
    sitk.WriteImage(image, str(paths[0]))
    sitk.WriteImage(label_image, str(paths[1]))
    return paths


def register_demons(fixed: sitk.Image, moving: sitk.Image) -> sitk.Transform:
    matched = sitk.HistogramMatching(moving, fixed, 256, 7)
    demons = sitk.DiffeomorphicDemonsRegistrationFilter()
    demons.SetNumberOfIterations(200)
    demons.SetStandardDeviations(1.5)
    field = demons.Execute(fixed, matched)
    return sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))


def register_bspline_mi(fixed: sitk.Image, moving: sitk.Image) -> sitk.Transform:
    mesh = [8] * fixed.GetDimension()
    initial = sitk.BSplineTransformInitializer(fixed, mesh)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.25, seed=0)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=100)
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2, 1, 0])
    method.SetInitialTransform(initial, inPlace=True)
    method.Execute(fixed, moving)
    return initial


def register(method: str, fixed: sitk.Image, moving: sitk.Image) -> sitk.Transform:
    if method == "identity":
        return sitk.TranslationTransform(fixed.GetDimension())
    return register_demons(fixed, moving) if method == "demons" else register_bspline_mi(fixed, moving)


def register_pairs(pairs_dir: Path) -> None:
    for pair in sorted(p for p in pairs_dir.iterdir() if p.is_dir()):
        fixed = sitk.ReadImage(str(pair / "fixed.nii.gz"), sitk.sitkFloat32)
        moving = sitk.ReadImage(str(pair / "moving.nii.gz"), sitk.sitkFloat32)
        for method in METHODS:
            if (pair / f"{method}.h5.time.txt").is_file():  # done by an earlier, interrupted run of the same --work
                continue
            started = time.perf_counter()
            transform = register(method, fixed, moving)
            seconds = time.perf_counter() - started
            sitk.WriteTransform(transform, str(pair / f"{method}.h5"))
            (pair / f"{method}.h5.time.txt").write_text(f"{seconds:.3f}\n", encoding="utf-8")


def summarise(rows: list[dict], label: str, key: str) -> float | None:
    values = [row[key] for row in rows if row["label"] == label and row[key] is not None and np.isfinite(row[key])]
    return float(np.mean(values)) if values else None


def ground_truth_inverse(pairs_dir: Path) -> dict[str, float]:
    stats = [json.loads((p / "stats.json").read_text(encoding="utf-8"))["ground_truth"]
             for p in sorted(pairs_dir.iterdir()) if p.is_dir()]
    keys = ("mean_mm", "p95_mm", "inverse_consistency_p95_mm", "inverse_consistency_max_mm",
            "inverse_consistency_reverse_p95_mm", "inverse_inside_percent", "inverse_seconds")
    return {key: float(np.mean([s[key] for s in stats])) for key in keys} | {
        "worst_inverse_consistency_p95_mm": float(max(s["inverse_consistency_p95_mm"] for s in stats)),
        "worst_inverse_consistency_reverse_p95_mm": float(max(s["inverse_consistency_reverse_p95_mm"] for s in stats))}


def run_dataset(name: str, image: Path, labels: Path, model: str, count: int, work: Path) -> dict:
    pairs_dir = work / name / "pairs"
    if not pairs_dir.is_dir():  # else: resume an interrupted run with the same --work (finished registrations kept)
        assert drdm_main(["synthesize", str(image), "--labels", str(labels), "--model", model, "--count", str(count),
                          "--seed", "0", "--speed", "fast", "--inverse", "--out", str(pairs_dir)]) == 0
    register_pairs(pairs_dir)
    table = {}
    for method in METHODS:
        shutil.rmtree(work / name / f"report_{method}", ignore_errors=True)
        report = drdm.evaluate(pairs_dir, "{pair}/" + method + ".h5", work / name / f"report_{method}")
        rows = report.rows
        table[method] = {
            "epe_mean_mm": summarise(rows, "foreground", "epe_mean_mm"),
            "epe_p95_mm": summarise(rows, "foreground", "epe_p95_mm"),
            "epe_mean_mm_all": summarise(rows, "all", "epe_mean_mm"),
            "dice_foreground": summarise(rows, "foreground", "dice"),
            "hd95_mm_foreground": summarise(rows, "foreground", "hd95_mm"),
            "dice_per_label": {row_label: summarise(rows, row_label, "dice")
                               for row_label in dict.fromkeys(r["label"] for r in rows) if row_label not in ("all", "foreground")},
            "folding_percent": summarise(rows, "all", "folding_percent"),
            "seconds": summarise(rows, "all", "seconds"),
            "direction_warnings": len(report.warnings),
            "inverse_epe_mean_mm": summarise(rows, "foreground", "inverse_epe_mean_mm"),
        }
    return {"data": name, "model": model, "pairs": count, "methods": table, "ground_truth": ground_truth_inverse(pairs_dir)}


def fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = ["# Registration baselines scored by `drdm evaluate`", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), SimpleITK "
             f"{report['simpleitk']}, {report['date']}; {report['seconds']:.0f} s for the last (possibly resumed) run. Produced by "
             "`python benchmarks/registration_baselines.py`. Pairs: `drdm synthesize --speed fast --inverse` (seeds 0, 2, "
             "4, …). EPE, Dice, HD95 over the foreground (any label), mean over the pairs; folding: % of voxels of the "
             "prediction with det J ≤ 0; time: the registration's own run time.", "",
             "| data | method | mean EPE (mm) | p95 EPE (mm) | Dice | HD95 (mm) | folding % | time (s) | direction warnings |",
             "|---|---|---|---|---|---|---|---|---|"]
    for data in report["datasets"]:
        for method, row in data["methods"].items():
            lines.append(f"| {data['data']} ({data['pairs']} pairs) | {method} | {fmt(row['epe_mean_mm'])} | "
                         f"{fmt(row['epe_p95_mm'])} | {fmt(row['dice_foreground'], 3)} | {fmt(row['hd95_mm_foreground'])} | "
                         f"{fmt(row['folding_percent'], 3)} | {fmt(row['seconds'])} | {row['direction_warnings']} |")
    lines += ["", "Ground truth (φ_syn) and its inverse (`transform_inverse.h5`), mean over the pairs:", "",
              "| data | mean \\|u\\| (mm) | p95 \\|u\\| (mm) | p95 \\|φ(φ⁻¹(x)) − x\\| (mm) | worst pair | "
              "p95 \\|φ⁻¹(φ(x)) − x\\| (mm) | worst pair | φ⁻¹ inside (%) | inversion (s) |", "|---" * 9 + "|"]
    for data in report["datasets"]:
        g = data["ground_truth"]
        lines.append(f"| {data['data']} | {fmt(g['mean_mm'])} | {fmt(g['p95_mm'])} | {fmt(g['inverse_consistency_p95_mm'], 4)} | "
                     f"{fmt(g['worst_inverse_consistency_p95_mm'], 4)} | {fmt(g['inverse_consistency_reverse_p95_mm'], 3)} | "
                     f"{fmt(g['worst_inverse_consistency_reverse_p95_mm'], 3)} | {fmt(g['inverse_inside_percent'], 1)} | "
                     f"{fmt(g['inverse_seconds'])} |")
    if report.get("note"):
        lines += ["", report["note"]]
    lines += ["", "Per-pair pictures (fixed, warped moving, EPE map, det J map): "
              + ", ".join(f"`{p}`" for p in report["pictures"])]
    return "\n".join(lines) + "\n"


def keep_pictures(work: Path, names: list[str]) -> list[str]:
    folder = RESULTS / "registration_baselines"
    folder.mkdir(parents=True, exist_ok=True)
    kept = []
    for name in names:
        for method in METHODS[1:]:
            first = sorted((work / name / f"report_{method}" / "pairs").glob("*.png"))[0]
            target = folder / f"{name}_{method}_{first.name}"
            shutil.copyfile(first, target)
            kept.append(str(target.relative_to(REPO)))
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=4, help="pairs of the CMR slice")
    parser.add_argument("--pairs-3d", type=int, default=3, help="pairs of the 3D phantom")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", help="folder for pairs and reports (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="drdm-baselines-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    datasets = [run_dataset("acdc001_ed_mid_2d", *cmr_slice(work), "cmr-2d", args.pairs, work),
                run_dataset("phantom_3d_64", *phantom_volume(work), "random-field-3d", args.pairs_3d, work)]
    report = {"machine": machine_description(), "simpleitk": sitk.Version.VersionString(),
              "date": time.strftime("%Y-%m-%d"), "seconds": time.perf_counter() - started, "datasets": datasets,
              "work": str(work), "pictures": keep_pictures(work, ["acdc001_ed_mid_2d", "phantom_3d_64"])}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "registration_baselines.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "registration_baselines.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))


if __name__ == "__main__":
    main()
