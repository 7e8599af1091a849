"""The slice stack of a 2D model on a 3D volume, and its random draws smooth through the slices (a building block of
:mod:`drdm.noise` and :mod:`drdm.sampler`; what it is for: :mod:`drdm.physical.slice_coherence`).

Coherent slices: a 2D model deforms a 3D volume with one field that is smooth through the slices.

The authors apply their 2D model slice by slice with independent noise, which tears a volume apart between
slices. Here the random draws of every slice are one slice of a random process that is smooth through the
slices, correlated over the same physical distance as within a slice, and each slice keeps exactly the
statistics of the 2D forward process:

* each standard-normal control-grid tensor of the forward process (one per velocity scale, cell size ``h``
  working voxels in plane) is drawn on a lattice of nodes :data:`THROUGH_PLANE_CELL` ``· h`` apart along the slice
  axis (random phase), the distance that makes the forward field as smooth through the slices as within them;
  a slice between nodes ``j`` and ``j + 1`` at fraction ``a`` gets ``((1 − a) e_j + a e_{j+1}) / √((1 − a)² + a²)``,
  which is again exactly N(0, 1), independent between cells and channels: the 2D statistics, per slice;
* decisions that scale a slice's field (the forward field's fold back-off, a recovery step halved because it
  would fold) are shared between neighbours through a Lipschitz envelope over the slice positions
  (:func:`coherent_scales`), so one slice's smaller step does not tear it from the next.

:class:`SliceStack` carries the slice positions (in working voxels) through the sampler.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .settings import SLICE_MODES, look_up_option

SCALE_SLOPE_CELLS = 1.0  # a per-slice scale may change by 1 over this many coarsest control cells
# Through-plane node spacing in control cells. In plane, each scale's cell values are interpolated twice (onto the
# control grid, then onto the image) and the flow integration mixes them further, so the forward field is smoother
# in plane than its cells; 1.25 cells through the slices give the forward field alone the same roughness through
# as within the slices (random-field-2d, 6 seeds: median ratio 1.24 at 1 cell, 0.85-0.88 at 1.5 cells, on the ACDC
# stack and a near-isotropic phantom; benchmarks/results/slice_coherence.md).
THROUGH_PLANE_CELL = 1.25


@dataclass(frozen=True)
class SliceStack:
    """Neighbouring slices of one volume deformed by a 2D model (batch elements of one sampler group).

    Attributes:
        positions: position of each slice along the slice axis, in voxels of the working grid
            (``k · slice spacing / working spacing`` for slice ``k``).
    """

    positions: tuple[float, ...]

    @classmethod
    def regular(cls, count: int, spacing_ratio: float) -> SliceStack:
        """``count`` slices ``spacing_ratio`` working voxels apart."""
        if count < 1 or not spacing_ratio > 0:
            raise ValueError(f"a slice stack needs at least one slice and a positive spacing, got {count}, {spacing_ratio}")
        return cls(tuple(k * float(spacing_ratio) for k in range(count)))

    def __len__(self) -> int:
        return len(self.positions)

    def tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The positions as a float64 ``(B,)`` tensor."""
        return torch.tensor(self.positions, dtype=torch.float64, device=device)


def slice_stack(mode: str, slice_count: int | None, spacing_ratio: float) -> SliceStack | None:
    """The :class:`SliceStack` the sampler needs for ``mode`` (``"coherent"``/``"independent"``).

    ``slice_count``: slices of a 2D-on-3D working grid (``None`` for a 2D image or a 3D model: no stack);
    ``spacing_ratio``: slice spacing over working spacing. ``"independent"`` and non-sliced grids give ``None``.
    """
    look_up_option(mode, SLICE_MODES, "slices")
    if mode == "independent" or slice_count is None:
        return None
    return SliceStack.regular(slice_count, spacing_ratio)


def coherent_normals(stack: SliceStack, cell: float, shape: Sequence[int], generator: torch.Generator | None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normals ``(B, *shape)`` for the ``B`` slices of ``stack``, smooth through the slices.

    Nodes lie ``cell`` working voxels apart along the slice axis, starting at a random phase before the first
    slice; each slice mixes its two nodes linearly and is renormalised to unit variance, so every slice's
    values are i.i.d. N(0, 1) (the statistics of an independent draw) while neighbouring slices are correlated
    over the distance ``cell``.
    """
    if not cell > 0:
        raise ValueError(f"cell must be positive, got {cell}")
    source = device if generator is None else generator.device  # where the random numbers are drawn
    positions = stack.tensor()
    relative = (positions - positions.min()) / cell + float(torch.rand((), generator=generator, device=source))
    first = torch.floor(relative).long()
    draws = torch.randn((int(first.max()) + 2,) + tuple(shape), generator=generator, device=source).to(device)
    fraction = (relative - first).to(draws.dtype).to(device)
    norm = torch.sqrt((1 - fraction) ** 2 + fraction ** 2)
    view = (-1,) + (1,) * len(shape)
    first = first.to(device)
    return draws[first] * ((1 - fraction) / norm).reshape(view) + draws[first + 1] * (fraction / norm).reshape(view)


def coherent_scales(scale: torch.Tensor, stack: SliceStack, slope: float) -> torch.Tensor:
    """The largest scales ``≤ scale`` that change by at most ``slope`` per working voxel between slices.

    ``scale``: ``(G·B,)`` per-element factors of ``G`` consecutive groups of the ``B`` slices of ``stack``.
    Returns ``min_j (scale_j + slope · |p_k − p_j|)`` within each group (a Lipschitz lower envelope).
    """
    count = len(stack)
    if scale.numel() % count:
        raise ValueError(f"{scale.numel()} scales do not split into groups of {count} slices")
    groups = scale.reshape(-1, count)
    positions = stack.tensor(scale.device).to(scale.dtype)
    distance = (positions[:, None] - positions[None, :]).abs()  # (B, B)
    envelope = (groups[:, None, :] + slope * distance[None]).min(dim=2).values
    return envelope.reshape(scale.shape)


def scale_slope(image_size: int, coarsest_cells: int) -> float:
    """Slope of :func:`coherent_scales` for an image of side ``image_size`` whose coarsest control scale has
    ``coarsest_cells`` cells over the control grid (which spans ``2 · image_size`` working voxels)."""
    coarsest_cell = 2.0 * image_size / coarsest_cells
    return 1.0 / (SCALE_SLOPE_CELLS * coarsest_cell)
