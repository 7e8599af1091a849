"""The inverse of a displacement field and its measured inverse consistency.

``φ(x) = x + u(x)`` (the pull map of a field ``u``); its inverse ``φ⁻¹(y) = y + v(y)`` solves
``v(y) = -u(y + v(y))``, found by a damped fixed-point iteration (plain iteration diverges for large
deformations). The inverse exists where φ is a diffeomorphism (no folding) and is only defined for points whose
image stays inside the grid: consistency is measured over those voxels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..field_statistics import displacement_statistics
from ..spatial import compose, warp

INVERSE_ITERATIONS = 100
INVERSE_TOLERANCE = 1e-4  # voxels: stop when no vector changes more


def invert_displacement(ddf: torch.Tensor, iterations: int = INVERSE_ITERATIONS,
                        tolerance: float = INVERSE_TOLERANCE) -> torch.Tensor:
    """The inverse field ``v`` of ``ddf`` (``φ(φ⁻¹(y)) = y``).

    ``ddf``: ``(N, ndim, *spatial)`` pull field in voxels, channel i along array axis i; returns the same shape,
    float64. Example: ``invert_displacement(torch.full((1, 2, 8, 8), 0.5))`` is ``-0.5`` everywhere.
    """
    u = ddf.to(torch.float64)
    v = -u
    for _ in range(iterations):
        updated = 0.5 * v - 0.5 * warp(u, v, padding="border")
        change = float((updated - v).abs().max())
        v = updated
        if change < tolerance:
            break
    return v


def maps_inside(ddf: torch.Tensor) -> torch.Tensor:
    """``(N, *spatial)`` True where ``x + ddf(x)`` lies inside the grid (voxel centres 0 … n - 1 on every axis)."""
    inside = torch.ones((ddf.shape[0],) + tuple(ddf.shape[2:]), dtype=torch.bool, device=ddf.device)
    for axis, size in enumerate(ddf.shape[2:]):
        shape = [1] * (ddf.dim() - 2)
        shape[axis] = size
        position = torch.arange(size, device=ddf.device, dtype=ddf.dtype).reshape(shape) + ddf[:, axis]
        inside &= (position >= 0) & (position <= size - 1)
    return inside


def _masked_p95_mm(residual: torch.Tensor, mask: torch.Tensor, spacing: Sequence[float]) -> tuple[float, float]:
    scale = torch.tensor(list(spacing), dtype=torch.float64).reshape(1, -1, *([1] * (residual.dim() - 2)))
    magnitude = (residual * scale).pow(2).sum(1).sqrt()[mask].cpu().numpy()
    if magnitude.size == 0:
        return float("nan"), float("nan")
    return float(np.percentile(magnitude, 95)), float(magnitude.max())


def inverse_consistency(ddf: torch.Tensor, inverse: torch.Tensor, spacing: Sequence[float]) -> dict[str, float]:
    """Inverse consistency of one field (batch of 1) and its inverse, in mm (``spacing``: mm, array order).

    Keys: ``inverse_consistency_p95_mm`` / ``_max_mm``: ``|φ(φ⁻¹(x)) - x|`` over the voxels whose ``φ⁻¹(x)`` lies
    inside the grid; ``inverse_consistency_reverse_p95_mm``: ``|φ⁻¹(φ(x)) - x|`` where ``φ(x)`` lies inside;
    ``inverse_inside_percent``: share of voxels where φ⁻¹ maps inside; ``inverse_mean_mm``: mean ``|v|``.
    """
    u, v = ddf.to(torch.float64), inverse.to(torch.float64)
    forward_mask, reverse_mask = maps_inside(v), maps_inside(u)
    p95, largest = _masked_p95_mm(compose(u, v, padding="border"), forward_mask, spacing)
    reverse_p95, _ = _masked_p95_mm(compose(v, u, padding="border"), reverse_mask, spacing)
    return {"inverse_consistency_p95_mm": p95, "inverse_consistency_max_mm": largest,
            "inverse_consistency_reverse_p95_mm": reverse_p95,
            "inverse_inside_percent": 100.0 * float(forward_mask.double().mean()),
            "inverse_mean_mm": displacement_statistics(v, spacing)["mean_mm"][0]}
