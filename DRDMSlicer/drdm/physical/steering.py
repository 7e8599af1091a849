"""Steering a deformation: a size in millimetres, and structures kept still or alone deformed.

A diffeomorphic DRDM sample is a composition of exponentials of stationary velocities: the random field's, then one
per recovery step (:class:`drdm.sampler.DeformationPath`). Steering replays that path with every velocity

* multiplied by one factor ``s`` (the **size**): the same ingredients in another amount, so one seed keeps its shape
  at every size, and every exponential of a scaled velocity is a diffeomorphism (compositions that would fold are
  attenuated around the folding voxels, :func:`drdm.sampler._soften_locally`), so no size folds; ``s`` is found
  by a bracketed secant search on the mean |u| in mm over the image (or over where the deformation is allowed),
  which grows almost linearly with ``s``;
* multiplied voxel-wise by a weight ``w(x)`` in [0, 1] (the **regions**): 0 in kept structures (``keep``) or beyond the
  chosen structures plus a margin (``only``), 1 away from them, a smooth ramp ``margin`` mm wide between. Where
  ``w = 0`` every exponential and every composition leaves a point where it is, so those points do not move at all.

The weight lives on the model's working grid and the field is resampled linearly to the input's grid, which mixes
neighbouring working voxels. So that no input voxel of a held region picks up motion that way, the ramp starts a
guard distance ``sqrt(k) * (working spacing + input spacing)`` away (k: the axes the model sees) from the held
voxels: the largest distance between an input voxel and the working voxels its value is interpolated from, plus the
interpolation error of the distance map itself. Distances are measured in 3D on the input's grid, in mm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import DRDMError
from ..sampler import DeformationPath, GenerationResult
from .geometry import WorkingGrid

MAX_SIZE_FACTOR = 1.5  # the largest size offered: this many times the size the model gives on its own
SIZE_TOLERANCE = 0.02  # the search stops within 2 % of the asked size (the promise is 10 %)
SIZE_EVALUATIONS = 8  # replays tried at most by the size search
LARGEST_SCALE = 4.0  # the velocity factor the search may go up to


class SteeringError(DRDMError):
    """A size or a region that cannot be used; the message says why in one line."""


def _smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass(frozen=True)
class Regions:
    """Where a deformation may act, from a label map on the input's grid (array order).

    Attributes:
        keep: label values whose structures are not deformed.
        only: label values whose structures (and ``margin`` mm around them) alone are deformed.
        margin: width of the smooth transition in mm.
        keep_distance: signed distance (mm, negative inside) to the kept structures, or None.
        only_distance: signed distance (mm, negative inside) to the ``only`` structures, or None.
    """

    keep: tuple[int, ...]
    only: tuple[int, ...]
    margin: float
    keep_distance: np.ndarray | None
    only_distance: np.ndarray | None

    def held_still(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(inside kept structures, beyond the only-region plus margin)`` as boolean arrays (None when not asked)."""
        kept = None if self.keep_distance is None else self.keep_distance <= 0.0
        beyond = None if self.only_distance is None else self.only_distance >= self.margin
        return kept, beyond

    def held(self) -> np.ndarray:
        """Boolean array: the voxels held still (inside kept structures or beyond the only-region plus margin)."""
        return ~self.allowed()

    def allowed(self) -> np.ndarray:
        """Boolean array: where the deformation may act (outside kept structures, inside the only-region + margin)."""
        kept, beyond = self.held_still()
        shape = (self.keep_distance if self.keep_distance is not None else self.only_distance).shape
        mask = np.ones(shape, dtype=bool)
        if kept is not None:
            mask &= ~kept
        if beyond is not None:
            mask &= ~beyond
        return mask

    def working_weight(self, grid: WorkingGrid, device: torch.device) -> torch.Tensor:
        """The weight ``w`` on ``grid``'s working grid: ``(batch, 1, S, ..., S)`` float32, network orientation."""
        guard = math.sqrt(len(grid.model_axes)) * (grid.working_spacing + max(grid.spacing[a] for a in grid.model_axes))
        weight = None
        if self.keep_distance is not None:
            distance = grid.resample_to_working(torch.from_numpy(self.keep_distance)).to(device)
            weight = _smoothstep((distance - guard) / self.margin)
        if self.only_distance is not None:
            distance = grid.resample_to_working(torch.from_numpy(self.only_distance)).to(device)
            inside = _smoothstep((self.margin - guard - distance) / self.margin)
            weight = inside if weight is None else weight * inside
        return weight

    def record(self) -> dict:
        """The settings as stats.json keeps them."""
        return {"keep": list(self.keep), "only": list(self.only), "margin_mm": self.margin}


def _signed_distance(labels: np.ndarray, values: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    mask = sitk.GetImageFromArray(np.isin(labels, values).astype(np.uint8))
    mask.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    distance = sitk.SignedMaurerDistanceMap(mask, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return sitk.GetArrayFromImage(distance).astype(np.float64)


def plan_regions(labels: np.ndarray | None, spacing: tuple[float, ...], *, keep: tuple[int, ...] = (),
                 only: tuple[int, ...] = (), margin: float) -> Regions | None:
    """The :class:`Regions` of ``keep``/``only`` label values in ``labels`` (array order, ``spacing`` mm in array
    order); None when neither is given. Raises :class:`SteeringError` for labels that are absent, regions without a
    label map, a label in both lists, or a margin that is not positive."""
    keep = tuple(int(v) for v in keep)
    only = tuple(int(v) for v in only)
    if not keep and not only:
        return None
    if labels is None:
        raise SteeringError("keeping structures still or deforming only some needs a label map (labels)")
    if not margin > 0 or not math.isfinite(margin):
        raise SteeringError(f"the margin must be a positive number of mm, got {margin}")
    both = sorted(set(keep) & set(only))
    if both:
        raise SteeringError(f"label {both[0]} is both kept still and the only one deformed: choose one")
    present = {int(v) for v in np.unique(labels)} - {0}
    missing = sorted((set(keep) | set(only)) - present)
    if missing:
        have = ", ".join(str(v) for v in sorted(present)) or "none"
        raise SteeringError(f"label {missing[0]} is not in the label map (its labels: {have})")
    return Regions(keep=keep, only=only, margin=float(margin),
                   keep_distance=_signed_distance(labels, keep, spacing) if keep else None,
                   only_distance=_signed_distance(labels, only, spacing) if only else None)


@dataclass
class SteeredField:
    """A steered sample: ``ddf`` on the input's grid ``(1, ndim, *shape)`` (voxels), the working-grid field and
    what the steering did (``statistics``: JSON-ready)."""

    ddf: torch.Tensor
    working: torch.Tensor
    statistics: dict


class _SizeMeter:
    """Mean |u| in mm over the allowed voxels of the input's grid, for a working-grid field."""

    def __init__(self, grid: WorkingGrid, allowed: np.ndarray | None) -> None:
        self.grid = grid
        self.allowed = None if allowed is None else torch.from_numpy(allowed)
        if self.allowed is not None and not bool(self.allowed.any()):
            raise SteeringError("no voxel is left to deform: the kept structures (or the region) cover the whole image")

    def original(self, working: torch.Tensor) -> torch.Tensor:
        return self.grid.field_to_original(working)

    def size(self, ddf: torch.Tensor) -> float:
        magnitude = _magnitude_mm(ddf, self.grid.spacing)
        return float(magnitude.mean() if self.allowed is None else magnitude[self.allowed].mean())


def _magnitude_mm(ddf: torch.Tensor, spacing: tuple[float, ...]) -> torch.Tensor:
    """|u| in mm per voxel, float64 ``(*shape)``, of a ``(1, ndim, *shape)`` field in voxels (spacing in array order)."""
    scale = torch.tensor(spacing, dtype=torch.float64).reshape((1, len(spacing)) + (1,) * len(spacing))
    return (ddf.to(torch.float64) * scale).pow(2).sum(1).sqrt()[0]


def steer(generation: GenerationResult, grid: WorkingGrid, *, magnitude: float | None = None,
          regions: Regions | None = None) -> SteeredField:
    """Replay one sample's path (``generation.path``, batch of one image or one slice stack) at the asked size and
    with the regions' weight.

    Args:
        generation: a :func:`drdm.sampler.generate` result made with ``record_path=True`` (one sample).
        grid: its working grid. magnitude: the mean |u| in mm to reach over the allowed voxels (None: the size the
            model gives). regions: from :func:`plan_regions`, or None.

    Returns:
        :class:`SteeredField`; raises :class:`SteeringError` for a size beyond :data:`MAX_SIZE_FACTOR` × the model's
        own (the message names the reachable size) or not above 0.
    """
    path: DeformationPath | None = generation.path
    if path is None:
        raise ValueError("steer needs a generation made with record_path=True")
    if magnitude is not None and not (magnitude > 0 and math.isfinite(magnitude)):
        raise SteeringError(f"the size must be a positive number of mm, got {magnitude}")
    device = path.velocities[0].device
    weight = None if regions is None else regions.working_weight(grid, device)
    meter = _SizeMeter(grid, None if regions is None else regions.allowed())

    def replay(scale: float) -> tuple[torch.Tensor, torch.Tensor, float]:
        working = path.field(scale, weight)
        original = meter.original(working)
        return working, original, meter.size(original)

    if weight is None:  # the sample itself at scale 1
        natural_working = generation.ddf
        natural_original = meter.original(natural_working)
        natural = (natural_working, natural_original, meter.size(natural_original))
    else:
        natural = replay(1.0)
    own = natural[2]
    stats = {"natural_mm": own, "size_scale": 1.0}
    chosen = natural
    if magnitude is not None:
        reachable = MAX_SIZE_FACTOR * own
        if magnitude > reachable * (1 + SIZE_TOLERANCE):  # a size rounded up from 1.5x is still taken
            raise SteeringError(f"a size of {magnitude:g} mm is beyond reach for this image and seed: up to "
                                f"{reachable:.2f} mm ({MAX_SIZE_FACTOR:g} x the model's own {own:.2f} mm)")
        chosen, scale = _search(replay, natural, magnitude)
        stats["size_scale"] = scale
        stats["magnitude_mm"] = float(magnitude)
    working, original, reached = chosen
    stats["size_reached_mm"] = reached
    if regions is not None:
        stats.update(regions.record())
        stats.update(_held_motion(original, grid, regions))
    return SteeredField(ddf=original.float(), working=working, statistics=stats)


def _search(replay, natural: tuple[torch.Tensor, torch.Tensor, float],
            target: float) -> tuple[tuple[torch.Tensor, torch.Tensor, float], float]:
    """The replay whose mean |u| is ``target`` (within :data:`SIZE_TOLERANCE`), and its velocity factor: secant steps
    inside a bracket of factors whose sizes lie below and above the target (size 0 at factor 0)."""
    best, best_scale = natural, 1.0
    below, above = (0.0, 0.0), None  # (factor, size)
    if natural[2] < target:
        below = (1.0, natural[2])
    else:
        above = (1.0, natural[2])
    scale = target / natural[2] if natural[2] > 0 else 1.0
    for _ in range(SIZE_EVALUATIONS):
        if abs(best[2] - target) <= SIZE_TOLERANCE * target:
            break
        result = replay(scale)
        if abs(result[2] - target) < abs(best[2] - target):
            best, best_scale = result, scale
        if result[2] < target and above is None and scale > below[0] and result[2] <= below[1]:
            break  # a larger factor gave no larger size: the fold-free attenuation has saturated the growth
        if result[2] < target:
            below = max(below, (scale, result[2]))
        else:
            above = (scale, result[2]) if above is None else min(above, (scale, result[2]))
        if above is None:  # not yet bracketed: grow the factor in proportion
            if scale >= LARGEST_SCALE:
                break
            scale = min(LARGEST_SCALE, scale * target / max(result[2], 1e-12))
            continue
        (a, size_a), (b, size_b) = below, above
        scale = a + (target - size_a) * (b - a) / max(size_b - size_a, 1e-12)
        if not a < scale < b:
            scale = 0.5 * (a + b)
    if abs(best[2] - target) > 0.1 * target:
        raise SteeringError(f"a size of {target:g} mm could not be reached for this image and seed (reached "
                            f"{best[2]:.2f} mm): choose a smaller size")
    return best, best_scale


def _held_motion(ddf: torch.Tensor, grid: WorkingGrid, regions: Regions) -> dict:
    """The largest |u| (mm) inside kept structures and beyond the only-region plus margin."""
    magnitude = _magnitude_mm(ddf, grid.spacing).numpy()
    kept, beyond = regions.held_still()
    out = {}
    if kept is not None:
        out["max_mm_in_kept"] = float(magnitude[kept].max()) if kept.any() else 0.0
    if beyond is not None:
        out["max_mm_outside_region"] = float(magnitude[beyond].max()) if beyond.any() else 0.0
    return out
