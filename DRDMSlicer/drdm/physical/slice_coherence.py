"""How coherent a 2D model's deformation of a 3D volume is through its slices.

The slices are drawn as one stack (:mod:`drdm.slice_stack`: the method); this module measures the result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def through_plane_roughness(ddf: torch.Tensor, spacing: Sequence[float], slice_axis: int) -> dict[str, float]:
    """How smoothly a field changes between slices compared with within a slice.

    ``ddf``: ``(1, 3, *shape)`` displacement in voxels (channel i along array axis i); ``spacing``: mm per voxel,
    array order. For each axis ``a``: the mean of ``|u(i+1) − u(i)|`` (vector norm, mm) over ``spacing[a]``,
    in mm per mm. Returns ``through_plane_mm_per_mm`` (the sliced axis), ``in_plane_mm_per_mm`` (mean of the two
    other axes) and ``through_plane_roughness_ratio`` (their ratio: about 1 for an isotropic 3D field; a
    volume torn between slices scores far above).
    """
    if ddf.dim() != 5 or ddf.shape[1] != 3:
        raise ValueError(f"expected a (1, 3, D, H, W) field, got {tuple(ddf.shape)}")
    scale = torch.tensor(list(spacing), dtype=torch.float64).reshape(1, 3, 1, 1, 1)
    totals, counts = [0.0] * 3, [0] * 3
    depth = ddf.shape[2]
    for start in range(0, depth, 16):  # slabs along the first axis (one plane of overlap): bounded memory
        stop = min(start + 16, depth)
        part = ddf[:, :, start:min(stop + 1, depth)].to(torch.float64) * scale
        for axis in range(3):
            core = part if axis == 0 else part[:, :, :stop - start]  # the overlap plane counts in its own slab
            difference = core.diff(dim=2 + axis).pow(2).sum(1).sqrt()
            totals[axis] += float(difference.sum())
            counts[axis] += difference.numel()
    per_axis = [totals[a] / counts[a] / float(spacing[a]) if counts[a] else float("nan") for a in range(3)]
    through = per_axis[slice_axis]
    within = [value for axis, value in enumerate(per_axis) if axis != slice_axis]
    in_plane = sum(within) / len(within)
    ratio = through / in_plane if in_plane > 0 else (0.0 if through == 0 else math.inf)
    return {"through_plane_mm_per_mm": through, "in_plane_mm_per_mm": in_plane, "through_plane_roughness_ratio": ratio}
