"""Score a registration tool against DRDM's ground truth (``drdm evaluate``, :func:`evaluate`).

A pair folder (``drdm synthesize``) holds ``fixed.nii.gz``, ``moving.nii.gz``, ``transform.h5`` (the ground truth:
fixed-grid points to moving points) and, with labels, ``fixed_labels.nii.gz`` and ``moving_labels.nii.gz``.
Each pair's predicted transform (:mod:`drdm.registration.predicted_transforms`: same direction as the ground truth) is scored
on the fixed grid: end-point error (EPE, mm) over the whole grid, the foreground (any label) and each label; Dice
and 95 % Hausdorff distance of the moving labels warped by the prediction against the fixed labels; det J of the
prediction; the tool's time. The inverse of each prediction is scored too: when it fits far better (mean EPE
below :data:`DIRECTION_RATIO` of the prediction's), the pair is flagged, since the prediction most probably maps
the other way (moving to fixed).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..field_statistics import determinant_statistics
from ..physical.io import (
    InputError,
    displacement_image,
    displacement_voxels,
    read_displacement_transform,
    read_image,
    read_labels,
    staged_directory,
)
from ..spatial import jacobian_determinant
from .inverse import invert_displacement
from .metrics import dice, end_point_error, error_statistics, hausdorff95
from .predicted_transforms import field_on_grid, read_predicted_transform, read_time

PAIR_FILES = ("fixed.nii.gz", "moving.nii.gz", "transform.h5")
DIRECTION_RATIO = 0.5
PAIR_PLACEHOLDER = "{pair}"


@dataclass
class PairResult:
    """One pair's scores: ``rows`` (one per region: all, foreground, each label) and the arrays of its picture."""

    pair: str
    rows: list[dict]
    warning: str
    fixed: np.ndarray
    warped: np.ndarray
    epe: np.ndarray
    det: np.ndarray
    spacing: tuple[float, ...]


@dataclass
class EvaluationReport:
    """What :func:`evaluate` wrote: the report folder, every CSV row, the direction warnings per pair."""

    out: Path
    rows: list[dict] = field(default_factory=list)
    warnings: dict[str, str] = field(default_factory=dict)


def find_pairs(pairs_dir: str | Path) -> list[Path]:
    """The pair folders under ``pairs_dir`` (sorted by name)."""
    pairs_dir = Path(pairs_dir)
    if not pairs_dir.is_dir():
        raise InputError(f"pairs folder {pairs_dir}: no such folder")
    pairs = sorted(p for p in pairs_dir.iterdir() if p.is_dir() and all((p / name).is_file() for name in PAIR_FILES))
    if not pairs:
        raise InputError(f"pairs folder {pairs_dir}: holds no pair folders ({', '.join(PAIR_FILES)}; "
                         "written by drdm synthesize)")
    return pairs


def predicted_path(pattern: str, pair: Path) -> Path:
    """The predicted transform of ``pair``: ``pattern`` with ``{pair}`` replaced by the pair folder's name; a
    relative result is taken from the pairs folder."""
    if PAIR_PLACEHOLDER not in pattern:
        raise InputError(f"`predicted` {pattern!r} must contain {PAIR_PLACEHOLDER} (e.g. {{pair}}/predicted.h5)")
    path = Path(pattern.replace(PAIR_PLACEHOLDER, pair.name))
    return path if path.is_absolute() else pair.parent / path


def _check_predictions(pattern: str, pairs: list[Path]) -> list[Path]:
    paths = [predicted_path(pattern, pair) for pair in pairs]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise InputError(f"{len(missing)} of {len(paths)} predicted transforms are missing: "
                         f"{', '.join(missing[:3])}{more}")
    return paths


def _regions(fixed_labels: np.ndarray | None, shape: tuple[int, ...]) -> list[tuple[str, np.ndarray]]:
    regions = [("all", np.ones(shape, dtype=bool))]
    if fixed_labels is not None:
        regions.append(("foreground", fixed_labels != 0))
        regions += [(str(int(v)), fixed_labels == v) for v in np.unique(fixed_labels) if v != 0]
    return regions


def _overlap(name: str, fixed_labels: np.ndarray | None, warped_labels: np.ndarray | None,
             reference: sitk.Image) -> dict[str, float]:
    if fixed_labels is None or name == "all":
        return {"dice": float("nan"), "hd95_mm": float("nan")}
    value = None if name == "foreground" else int(name)
    a = fixed_labels != 0 if value is None else fixed_labels == value
    b = warped_labels != 0 if value is None else warped_labels == value
    overlap = dice(torch.from_numpy(a.astype(np.uint8)), torch.from_numpy(b.astype(np.uint8)), labels=[1])[1]
    return {"dice": overlap, "hd95_mm": hausdorff95(a, b, reference)}


def _determinant(field_image: sitk.Image) -> tuple[np.ndarray, dict[str, float]]:
    det = jacobian_determinant(displacement_voxels(field_image))
    stats = determinant_statistics(det)
    summary = {"folding_percent": 100.0 * stats["folding_fraction"][0], "det_min": stats["det_min"][0],
               "det_max": stats["det_max"][0]}
    return det[0].numpy(), summary


def _read_pair(folder: Path) -> tuple[sitk.Image, sitk.Image, sitk.Image, sitk.Image | None, sitk.Image | None]:
    fixed = read_image(folder / "fixed.nii.gz", "fixed image")
    moving = read_image(folder / "moving.nii.gz", "moving image")
    truth = read_displacement_transform(folder / "transform.h5")
    labelled = (folder / "fixed_labels.nii.gz").is_file() and (folder / "moving_labels.nii.gz").is_file()
    fixed_labels = read_labels(folder / "fixed_labels.nii.gz", fixed) if labelled else None
    moving_labels = read_labels(folder / "moving_labels.nii.gz", moving) if labelled else None
    return fixed, moving, truth, fixed_labels, moving_labels


def score_pair(folder: Path, prediction: Path) -> PairResult:
    """Score the prediction of one pair folder (see the module's description)."""
    fixed, moving, truth_image, fixed_labels, moving_labels = _read_pair(folder)
    transform = read_predicted_transform(prediction, fixed.GetDimension())
    truth = field_on_grid(sitk.DisplacementFieldTransform(sitk.Cast(truth_image, sitk.sitkVectorFloat64)), fixed)
    predicted = field_on_grid(transform, fixed)
    epe = end_point_error(predicted, truth)
    inverse_epe = end_point_error(displacement_image(invert_displacement(displacement_voxels(predicted)), fixed), truth)
    warped = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat64)
    fixed_array = sitk.GetArrayFromImage(fixed_labels) if fixed_labels is not None else None
    warped_labels = (sitk.GetArrayFromImage(sitk.Resample(moving_labels, fixed, transform, sitk.sitkNearestNeighbor, 0,
                                                          moving_labels.GetPixelID()))
                     if moving_labels is not None else None)
    det, det_summary = _determinant(predicted)
    common = {"pair": folder.name, "predicted": str(prediction), "seconds": read_time(prediction), **det_summary}
    rows = []
    for name, mask in _regions(fixed_array, epe.shape):
        inverse = error_statistics(inverse_epe, mask)["epe_mean_mm"]
        rows.append({**common, "label": name, "voxels": int(mask.sum()), **error_statistics(epe, mask),
                     "inverse_epe_mean_mm": inverse, **_overlap(name, fixed_array, warped_labels, fixed)})
    warning = direction_warning(rows)
    for row in rows:
        row["direction_warning"] = bool(warning)
    return PairResult(pair=folder.name, rows=rows, warning=warning, fixed=sitk.GetArrayFromImage(fixed),
                      warped=sitk.GetArrayFromImage(warped), epe=epe, det=det,
                      spacing=tuple(float(s) for s in fixed.GetSpacing()[::-1]))


def direction_warning(rows: list[dict]) -> str:
    """The direction warning of one pair's rows ('' when none): scored on the foreground (the whole grid
    without labels), the inverse of the prediction fits far better than the prediction."""
    row = next((r for r in rows if r["label"] == "foreground"), rows[0])
    forward, inverse = row["epe_mean_mm"], row["inverse_epe_mean_mm"]
    if not inverse < DIRECTION_RATIO * forward:
        return ""
    return (f"{row['pair']}: the inverse of the prediction fits far better (mean EPE {inverse:.2f} mm vs "
            f"{forward:.2f} mm): the predicted transform probably maps moving to fixed; it must map fixed-grid "
            "points to moving points, as SimpleITK.Resample(moving, fixed, transform) uses it")


def evaluate(pairs_dir: str | Path, predicted: str, out: str | Path) -> EvaluationReport:
    """Score every pair folder's predicted transform and write the report folder ``out``.

    Args:
        pairs_dir: folder of pair folders written by ``drdm synthesize``.
        predicted: pattern naming each pair's predicted transform, ``{pair}`` standing for the pair folder's name
            (e.g. ``"{pair}/predicted.h5"``, relative to ``pairs_dir``, or an absolute pattern).
        out: report folder to create (``results.csv``, ``summary.md``, ``boxplot_<metric>.png``,
            ``pairs/<pair>.png``); it must not exist, and appears only when complete.

    Direction warnings are also printed to stderr. Example::

        report = drdm.evaluate("pairs/", "{pair}/demons.h5", "report/")
    """
    from .report import save_pair_picture, write_report  # matplotlib: only when a report is written

    pairs = find_pairs(pairs_dir)
    predictions = _check_predictions(predicted, pairs)
    out = Path(out)
    report = EvaluationReport(out=out)
    with staged_directory(out) as staging:
        (staging / "pairs").mkdir()
        for pair, prediction in zip(pairs, predictions):
            result = score_pair(pair, prediction)
            save_pair_picture(staging / "pairs" / f"{result.pair}.png", result)  # then the pair's arrays are dropped
            report.rows += result.rows
            if result.warning:
                report.warnings[result.pair] = result.warning
                print(f"drdm: warning: {result.warning}", file=sys.stderr)
        write_report(staging, report.rows, report.warnings)
    return report
