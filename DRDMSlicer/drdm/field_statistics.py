"""Statistics of deformation fields: folding, Jacobian range, displacement size (a building block: the sampler and the
physical layer both summarise fields with it).

All functions take displacement fields ``(N, ndim, *spatial)`` in voxels (channel i along array axis i)
and return one value per batch element.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .spatial import folding_fraction, interior, jacobian_determinant

__all__ = [
    "folding_fraction", "jacobian_statistics", "determinant_statistics", "displacement_statistics",
    "field_statistics",
]


def jacobian_statistics(ddf: torch.Tensor, margin: int = 1) -> dict[str, list[float]]:
    """Jacobian-determinant statistics per batch element.

    Keys: ``folding_fraction`` (det J ≤ 0, all voxels), ``folding_fraction_interior`` (leaving ``margin``
    voxels out at every face), ``det_min``, ``det_max``, ``log_det_std`` (spread of log det J over the
    voxels with det J > 0).
    """
    return determinant_statistics(jacobian_determinant(ddf.to(torch.float64)), margin)


def determinant_statistics(det_map: torch.Tensor, margin: int = 1) -> dict[str, list[float]]:
    """:func:`jacobian_statistics` from an already computed ``(N, *spatial)`` det J map."""
    det_map = det_map.to(torch.float64)
    det = det_map.flatten(1)
    positive = det > 0
    log_std = []
    for row, keep in zip(det, positive):
        values = torch.log(row[keep])
        log_std.append(float(values.std(unbiased=False)) if values.numel() > 1 else 0.0)
    inner = interior(det_map, margin).flatten(1)
    return {
        "folding_fraction": (det <= 0).double().mean(1).tolist(),
        "folding_fraction_interior": (inner <= 0).double().mean(1).tolist(),
        "det_min": det.min(1).values.tolist(),
        "det_max": det.max(1).values.tolist(),
        "log_det_std": log_std,
    }


def _magnitudes(ddf: torch.Tensor, scale: torch.Tensor | None = None, slab_voxels: int = 1 << 21) -> torch.Tensor:
    """``|u|`` per voxel in float64 ``(N, voxels)``, computed over slabs of the first spatial axis."""
    planes = max(1, slab_voxels // max(1, ddf[0, 0, 0].numel()))
    out = torch.empty((ddf.shape[0],) + tuple(ddf.shape[2:]), dtype=torch.float64, device=ddf.device)
    for start in range(0, ddf.shape[2], planes):
        part = ddf[:, :, start:start + planes].to(torch.float64)
        if scale is not None:
            part = part * scale
        out[:, start:start + planes] = part.pow(2).sum(1).sqrt()
    return out.flatten(1)


def displacement_statistics(ddf: torch.Tensor, spacing: Sequence[float] | None = None) -> dict[str, list[float]]:
    """Displacement magnitude per batch element: mean, 95th percentile (linear interpolation, as NumPy) and
    maximum, in voxels; with ``spacing`` (mm per voxel, array-axis order) also in mm and in percent of the
    field of view (relative to the mean side length of the field of view in mm). Works slab by slab, so
    full-resolution CT fields need little extra memory.
    """
    ndim = ddf.shape[1]
    mag_vox = _magnitudes(ddf)
    out = {
        "mean_vox": mag_vox.mean(1).tolist(),
        "p95_vox": _p95(mag_vox),
        "max_vox": mag_vox.max(1).values.tolist(),
    }
    del mag_vox
    if spacing is not None:
        if len(spacing) != ndim:
            raise ValueError(f"spacing has {len(spacing)} values for a {ndim}D field")
        scale = torch.tensor(list(spacing), dtype=torch.float64, device=ddf.device).reshape(1, ndim, *([1] * ndim))
        mag_mm = _magnitudes(ddf, scale)
        fov = sum(s * n for s, n in zip(spacing, ddf.shape[2:])) / ndim
        mean_mm = mag_mm.mean(1)
        p95_mm = _p95(mag_mm)
        out.update({
            "mean_mm": mean_mm.tolist(),
            "p95_mm": p95_mm,
            "max_mm": mag_mm.max(1).values.tolist(),
            "mean_percent_fov": (100.0 * mean_mm / fov).tolist(),
            "p95_percent_fov": [100.0 * value / fov for value in p95_mm],
        })
    return out


def _p95(values: torch.Tensor) -> list[float]:
    """95th percentile per row, linear interpolation between order statistics (NumPy's default)."""
    position = 0.95 * (values.shape[1] - 1)
    lo = int(position)
    hi = min(lo + 1, values.shape[1] - 1)
    frac = position - lo
    result = []
    for row in values.cpu().numpy():
        ordered = np.partition(row, [lo, hi])  # the two order statistics without a full sort
        result.append(float(ordered[lo] * (1 - frac) + ordered[hi] * frac))
    return result


def field_statistics(ddf: torch.Tensor, spacing: Sequence[float] | None = None) -> dict[str, list[float]]:
    """:func:`displacement_statistics` and :func:`jacobian_statistics` in one dictionary."""
    return {**displacement_statistics(ddf, spacing), **jacobian_statistics(ddf)}
