"""Scores of one predicted transform against a ground truth (Dice: :func:`dice`): end-point error
and 95 % Hausdorff distance (the numerical inverse for the direction check: :mod:`drdm.registration.inverse`).

Fields are ITK displacement images on the fixed grid (vectors in LPS mm); masks and label maps are numpy arrays
in array order on the same grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
import torch


def end_point_error(predicted: sitk.Image, truth: sitk.Image) -> np.ndarray:
    """``|u_pred(x) - u_true(x)|`` in mm at every voxel (array order), both fields on the same grid."""
    difference = sitk.GetArrayViewFromImage(predicted).astype(np.float64) - sitk.GetArrayViewFromImage(truth)
    return np.sqrt((difference ** 2).sum(-1))


def error_statistics(errors: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Mean, median and 95th percentile (NumPy's linear interpolation) of ``errors`` inside ``mask``
    (everywhere when None); NaN for an empty mask."""
    values = errors[mask] if mask is not None else errors.ravel()
    if values.size == 0:
        return {"epe_mean_mm": float("nan"), "epe_median_mm": float("nan"), "epe_p95_mm": float("nan")}
    median, p95 = np.percentile(values, [50, 95])
    return {"epe_mean_mm": float(values.mean()), "epe_median_mm": float(median), "epe_p95_mm": float(p95)}


def _boundary_distance(mask: np.ndarray, reference: sitk.Image) -> np.ndarray:
    """Distance in mm from every voxel centre to the boundary of ``mask`` (physical spacing of ``reference``)."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(reference)
    distance = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return np.abs(sitk.GetArrayFromImage(distance))


def _surface(mask: np.ndarray, reference: sitk.Image) -> np.ndarray:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(reference)
    return sitk.GetArrayFromImage(sitk.LabelContour(image, fullyConnected=False)) > 0


def hausdorff95(a: np.ndarray, b: np.ndarray, reference: sitk.Image) -> float:
    """95 % Hausdorff distance in mm between two boolean masks on ``reference``'s grid: the larger of the two
    directed 95th percentiles of the distances from one mask's surface voxels to the other's surface. 0 when
    both masks are empty, NaN when only one is."""
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return float("nan")
    to_b, to_a = _boundary_distance(b, reference), _boundary_distance(a, reference)
    directed = [np.percentile(to_b[_surface(a, reference)], 95), np.percentile(to_a[_surface(b, reference)], 95)]
    return float(max(directed))


def dice(a: torch.Tensor, b: torch.Tensor, labels: Sequence[int] | None = None) -> dict[int, float]:
    """Dice overlap per label value between two integer label maps of the same shape.

    ``labels`` defaults to every non-zero value present in either map. A label absent from both maps
    scores 1.0.
    """
    if a.shape != b.shape:
        raise ValueError(f"label maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if labels is None:
        labels = sorted(int(v) for v in torch.unique(torch.cat([a.flatten(), b.flatten()])) if int(v) != 0)
    scores = {}
    for value in labels:
        in_a, in_b = a == value, b == value
        total = int(in_a.sum()) + int(in_b.sum())
        scores[int(value)] = 1.0 if total == 0 else 2.0 * int((in_a & in_b).sum()) / total
    return scores
