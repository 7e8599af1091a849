"""Deform a real image in physical space: working grid → DRDM sampler → field in mm on the original grid →
one full-resolution warp of the image and labels with the ITK transform that is also written to disk.

Because the deformed image is produced by ``SimpleITK.Resample(original, original, transform, interpolator)``
with the very transform returned (and written), anyone can reproduce it from the transform file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import MEMORY_ADVICE, OutOfMemory
from ..field_statistics import determinant_statistics, displacement_statistics
from ..models import DRDMModel
from ..registration.inverse import inverse_consistency, invert_displacement
from ..sampler import GenerationResult, generate
from ..settings import DEFAULTS, PRECISIONS
from ..slice_stack import slice_stack
from ..spatial import jacobian_determinant_slabs, warp
from .geometry import WorkingGrid, plan_working_grid
from .io import InputError, displacement_image, displacement_transform, image_array, spacing_array_order
from .segment_volumes import segment_volume_changes
from .slice_coherence import through_plane_roughness
from .steering import Regions, SteeringError, plan_regions, steer

INTERPOLATORS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline, "nearest": sitk.sitkNearestNeighbor}
LABEL_METHODS = ("nearest", "onehot")
BYTES_PER_ORIGINAL_VOXEL = 130  # measured peak 113 B/voxel at 512×512×300 (benchmarks/big_volume.py), with margin
BYTES_PER_WORKING_VOXEL = 400  # network activations (two refinement passes, skip connections), fields, images


@dataclass
class DeformationResult:
    """A deformation of one image in physical space (all images on the input's grid).

    Attributes:
        image: deformed image (input pixel type), ``labels``: deformed label map or ``None``.
        field: displacement image (float64 vectors, LPS mm) of the pull transform.
        transform: the ITK DisplacementFieldTransform built from ``field``.
        jacobian: det J of the deformation (float32 image).
        ddf: ``(1, ndim, *shape)`` the same field in voxels, channel i along array axis i.
        statistics: JSON-ready summary (|u| in voxels, mm and % FOV; folding; det J range; run settings).
        generation: the working-grid result of :func:`drdm.sampler.generate`.
        grid: the working grid used.
        inverse_field: the inverse field (:func:`add_inverse`), or None.
        held: boolean array (array order) of the voxels held still by ``keep``/``only`` (kept structures, beyond the
            region plus margin), or None without regions.
    """

    image: sitk.Image
    labels: sitk.Image | None
    field: sitk.Image
    transform: sitk.DisplacementFieldTransform
    jacobian: sitk.Image
    ddf: torch.Tensor
    statistics: dict
    generation: GenerationResult
    grid: WorkingGrid
    inverse_field: sitk.Image | None = None  # set by add_inverse: the inverse pull field, LPS mm, same grid
    held: np.ndarray | None = None


def available_memory_bytes() -> int | None:
    """Memory this process may still use: ``$DRDM_MEMORY_LIMIT_BYTES`` if set, else MemAvailable (Linux)."""
    override = os.environ.get("DRDM_MEMORY_LIMIT_BYTES")
    if override:
        return int(override)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def estimate_memory_bytes(grid: WorkingGrid, batch_chunk: int | None = None) -> int:
    """Rough peak memory of :func:`deform_image` for a planned grid (bytes)."""
    original = int(np.prod(grid.shape))
    working_images = min(grid.batch, batch_chunk or grid.batch)
    working = working_images * grid.size ** len(grid.model_axes)
    return original * BYTES_PER_ORIGINAL_VOXEL + working * BYTES_PER_WORKING_VOXEL


def samples_per_chunk(grid: WorkingGrid, count: int) -> int:
    """How many of ``count`` samples of ``grid`` one sampler batch may hold: the largest chunk whose working-grid
    memory (:data:`BYTES_PER_WORKING_VOXEL` per voxel per sample) fits beside one original-grid warp."""
    available = available_memory_bytes()
    if available is None:
        return count
    per_sample = estimate_memory_bytes(grid) - int(np.prod(grid.shape)) * BYTES_PER_ORIGINAL_VOXEL
    room = available - estimate_memory_bytes(grid)
    return max(1, min(count, 1 + room // max(per_sample, 1)))


def check_memory(grid: WorkingGrid) -> None:
    """Fail fast, before any work, when the estimate exceeds the memory available."""
    needed = estimate_memory_bytes(grid)
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise OutOfMemory(f"volume {grid.shape} needs about {_size(needed)} of memory but only {_size(available)} "
                          f"is available: {MEMORY_ADVICE}")


def _size(count: int) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"


def resample_in_slabs(image: sitk.Image, transform: sitk.Transform, interpolator: int, default: float = 0.0,
                      pixel_type: int | None = None, slab_voxels: int = 1 << 22) -> sitk.Image:
    """``sitk.Resample(image, image, transform, interpolator, default, pixel_type)`` computed slab by slab
    along the last ITK axis (z): each output voxel is the same operation, so the result is identical, but
    temporaries stay small for CT-sized volumes. B-spline resampling is done in one call (its coefficient
    image would otherwise be recomputed for every slab)."""
    pixel_type = image.GetPixelID() if pixel_type is None else pixel_type
    size = image.GetSize()
    per_slab = max(1, slab_voxels // max(1, int(np.prod(size[:-1]))))
    if image.GetDimension() < 3 or interpolator == sitk.sitkBSpline or per_slab >= size[-1]:
        return sitk.Resample(image, image, transform, interpolator, default, pixel_type)
    out = None
    for start in range(0, size[-1], per_slab):
        stop = min(start + per_slab, size[-1])
        reference = image[:, :, start:stop]  # the output lattice of this slab (a copy of the input slab)
        resampled = sitk.Resample(image, reference, transform, interpolator, default, pixel_type)
        part = sitk.GetArrayViewFromImage(resampled)  # a view: valid while `resampled` lives
        if out is None:
            out = np.empty((size[2], size[1], size[0]), dtype=part.dtype)
        out[start:stop] = part
    result = sitk.GetImageFromArray(out)
    result.CopyInformation(image)
    return result


def warp_label_image(labels: sitk.Image, transform: sitk.Transform, method: str) -> sitk.Image:
    """Resample a label map through ``transform`` on its own grid: ``nearest`` or ``onehot`` (each label's
    indicator resampled linearly, then arg-max; outside the field of view is background)."""
    if method == "nearest":
        return resample_in_slabs(labels, transform, sitk.sitkNearestNeighbor, 0, labels.GetPixelID())
    values = [int(v) for v in np.unique(sitk.GetArrayViewFromImage(labels)) if v != 0]
    reference = sitk.GetArrayViewFromImage(labels)
    best = np.zeros(reference.shape, dtype=reference.dtype)
    inside = sitk.Resample(sitk.Cast(labels == 0, sitk.sitkFloat32), labels, transform, sitk.sitkLinear, 1.0)
    best_score = sitk.GetArrayFromImage(inside)
    for value in values:
        score = sitk.GetArrayFromImage(sitk.Resample(sitk.Cast(labels == value, sitk.sitkFloat32), labels, transform,
                                                     sitk.sitkLinear, 0.0))
        better = score > best_score
        best[better] = value
        best_score = np.where(better, score, best_score)
    out = sitk.GetImageFromArray(best)
    out.CopyInformation(labels)
    return out


def _plan(model: DRDMModel, array: torch.Tensor, spacing: tuple[float, ...], level: int,
          slice_axis: int | None) -> WorkingGrid:
    if not 0 <= level <= model.num_steps:
        raise InputError(f"level {level} is out of range: choose 0 to {model.num_steps}")
    if not torch.isfinite(array).all():
        raise InputError("image contains NaN or infinite values")
    if float(array.max() - array.min()) == 0.0:
        raise InputError("image is constant: there is nothing to deform")
    try:
        grid = plan_working_grid(tuple(array.shape), tuple(spacing), model.ndims, model.size, slice_axis)
    except ValueError as error:
        raise InputError(str(error)) from None
    check_memory(grid)
    return grid


def _stack(grid: WorkingGrid, slices: str):
    """The sampler's slice stack for ``grid`` (2D model on a 3D volume, ``slices="coherent"``), else ``None``."""
    sliced = grid.slice_axis is not None
    try:
        return slice_stack(slices, grid.batch if sliced else None,
                           grid.spacing[grid.slice_axis] / grid.working_spacing if sliced else 1.0)
    except ValueError as error:
        raise InputError(str(error)) from None


def compute_fields(model: DRDMModel, array: torch.Tensor, spacing: tuple[float, ...], *, level: int,
                   generators: list[torch.Generator], mode: str = "diffeomorphic", speed: str = "faithful",
                   slice_axis: int | None = None, progress: Callable[[int, int], None] | None = None,
                   cancel: Callable[[], bool] | None = None, batch: bool = True, slices: str = DEFAULTS.slices,
                   precision: str = DEFAULTS.precision, cuda_graph: bool | None = None,
                   magnitude: float | None = None,
                   regions: Regions | None = None) -> list[tuple[torch.Tensor, WorkingGrid, GenerationResult, dict | None]]:
    """One DRDM deformation field per generator, run as sampler batches of :func:`samples_per_chunk` samples
    (``batch`` False: one sample per sampler run, bit-identical to :func:`compute_field`).

    Each sample equals a run of :func:`compute_field` with its generator (up to the float32 rounding of
    batched convolutions: below 1e-3 voxels in the tests). ``progress(step, total)`` counts recovery steps
    over all chunks. ``slices``, ``precision``, ``cuda_graph``, ``magnitude``, ``regions``: see
    :func:`compute_field`. Returns ``(ddf, grid, generation, steering)`` per generator, in their order: the first
    three as :func:`compute_field` returns them, ``steering`` the statistics of :func:`drdm.physical.steering.steer`
    (None without a size or regions).
    """
    grid = _plan(model, array, spacing, level, slice_axis)
    stack = _stack(grid, slices)
    steered = magnitude is not None or regions is not None
    if magnitude is not None and not (magnitude > 0 and np.isfinite(magnitude)):
        raise SteeringError(f"the size must be a positive number of mm, got {magnitude}")
    if steered and mode != "diffeomorphic":
        raise SteeringError("a size (magnitude) or regions (keep, only) need mode 'diffeomorphic': the reference "
                            "sampler's fields fold, so they cannot be scaled or held still without folding")
    process = model.forward_process()
    working = grid.to_working(array.to(model.device))
    chunk = samples_per_chunk(grid, len(generators)) if batch else 1
    out = []
    for first in range(0, len(generators), chunk):
        group = generators[first:first + chunk]

        def step(done: int, total: int, first: int = first, size: int = len(group)) -> None:
            if progress is not None:
                progress(first * total + done * size, len(generators) * total)

        batch = working.repeat((len(group),) + (1,) * (working.dim() - 1))
        result = generate(model, batch, start_level=level, generator=group, mode=mode, speed=speed,
                          progress=step, cancel=cancel, slices=stack, precision=precision, cuda_graph=cuda_graph,
                          record_path=steered)
        per = working.shape[0]
        for k in range(len(group)):
            part = result.select(k * per, (k + 1) * per)
            if not steered:
                out.append((grid.field_to_original(part.ddf).cpu(), grid, part, None))
                continue
            field = steer(part, grid, magnitude=magnitude, regions=regions)
            part = replace(part, ddf=field.working, path=None,
                           image=warp(working, field.working, process.image_interpolation, "zeros"))
            out.append((field.ddf.cpu(), grid, part, field.statistics))
    return out


def compute_field(model: DRDMModel, array: torch.Tensor, spacing: tuple[float, ...], *, level: int,
                  generator: torch.Generator | None, mode: str = DEFAULTS.mode, speed: str = DEFAULTS.speed,
                  slice_axis: int | None = None, progress: Callable[[int, int], None] | None = None,
                  cancel: Callable[[], bool] | None = None, slices: str = DEFAULTS.slices,
                  precision: str = DEFAULTS.precision, cuda_graph: bool | None = None,
                  magnitude: float | None = None,
                  regions: Regions | None = None) -> tuple[torch.Tensor, WorkingGrid, GenerationResult]:
    """A DRDM deformation field for an image array, on the array's own grid.

    Args:
        array: the image in array order (``(z, y, x)`` or ``(y, x)``), any real dtype, any device.
        spacing: mm per voxel in array order.
        slices: a 2D model on a 3D volume: ``"coherent"`` (one field smooth through the slices) or
            ``"independent"`` (each slice its own field, the authors' way); ignored otherwise.
        precision: ``"exact"`` (TF32 off, the default) or ``"tf32"`` on a GPU (:func:`drdm.sampler.generate`).
        cuda_graph: ``None`` (default): the rule of :func:`drdm.settings.cuda_graph_by_rule` for the sampler batch;
            True/False: obeyed.
        magnitude: the mean |u| in mm to reach (over the voxels ``regions`` allow); None: the model's own size.
        regions: structures kept still or alone deformed (:func:`drdm.physical.steering.plan_regions`), or None.
            Both need mode ``"diffeomorphic"`` (:mod:`drdm.physical.steering`).

    Returns:
        ``(ddf, grid, generation)``: ``ddf`` ``(1, ndim, *array.shape)`` float32 on the CPU, in voxels of the
        array, channel i along array axis i (pull field); the working grid used; the working-grid result.
    """
    if magnitude is not None or regions is not None:
        ddf, grid, result, _ = compute_fields(model, array, spacing, level=level, generators=[generator], mode=mode,
                                              speed=speed, slice_axis=slice_axis, progress=progress, cancel=cancel,
                                              batch=False, slices=slices, precision=precision, cuda_graph=cuda_graph,
                                              magnitude=magnitude, regions=regions)[0]
        return ddf, grid, result
    grid = _plan(model, array, spacing, level, slice_axis)
    stack = _stack(grid, slices)
    working = grid.to_working(array.to(model.device))
    result = generate(model, working, start_level=level, generator=generator, mode=mode, speed=speed,
                      progress=progress, cancel=cancel, slices=stack, precision=precision, cuda_graph=cuda_graph)
    return grid.field_to_original(result.ddf).cpu(), grid, result


def deform_image(
    model: DRDMModel,
    image: sitk.Image,
    labels: sitk.Image | None = None,
    *,
    level: int,
    seed: int,
    mode: str = DEFAULTS.mode,
    speed: str = DEFAULTS.speed,
    interpolation: str = "linear",
    label_method: str = "nearest",
    slice_axis: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    slices: str = DEFAULTS.slices,
    precision: str = DEFAULTS.precision,
    cuda_graph: bool | None = None,
    magnitude: float | None = DEFAULTS.magnitude,
    keep: Sequence[int] = DEFAULTS.keep,
    only: Sequence[int] = DEFAULTS.only,
    margin: float = DEFAULTS.margin,
) -> DeformationResult:
    """Generate one DRDM deformation of ``image`` (and ``labels``) in physical space.

    Args:
        model: a loaded model (its device is used).
        image: 2D or 3D scalar SimpleITK image, any spacing / origin / direction.
        labels: optional integer label map on the same grid.
        level: start noise level T′; seed: random seed (same seed, same result on CPU).
        mode: ``"diffeomorphic"`` or ``"reference"``; speed: ``"faithful"`` or ``"fast"``.
        interpolation: SimpleITK interpolator of the output image: ``linear``, ``bspline`` or ``nearest``.
        label_method: ``nearest`` or ``onehot`` (per-label linear resampling + arg-max).
        slice_axis: array axis (z, y, x order) sliced when a 2D model deforms a 3D volume.
        slices: a 2D model on a 3D volume: ``"coherent"`` (default: one deformation smooth through the slices,
            :mod:`drdm.physical.slice_coherence`) or ``"independent"`` (each slice its own, the authors' way, for slice-wise
            training data). 2D images and 3D models ignore it.
        precision: the network's float32 arithmetic on a GPU: ``"exact"`` (default, TF32 off) or ``"tf32"``
            (:func:`drdm.network.convolution_precision`); identical on the CPU.
        cuda_graph: the CUDA-graph recovery step; ``None`` (default) decides by
            :func:`drdm.settings.cuda_graph_by_rule`, True/False are obeyed.
        magnitude: the size in mm: the mean |u| over the image (over where the deformation is allowed, with ``keep`` /
            ``only``), reached within 2 %; the same seed keeps its shape at every size. From near 0 up to 1.5× the
            size the model gives on its own (measured: 1.25× always, 1.5× not always); a size beyond reach raises a
            one-line error naming the reachable size.
            None (default): the model's own size, the sample unchanged. Diffeomorphic mode only.
        keep: label values whose structures are not deformed (|u| = 0 inside them); needs ``labels``.
        only: label values whose structures, and ``margin`` mm around them, alone are deformed; needs ``labels``.
        margin: width in mm of the smooth transition around ``keep`` / ``only`` structures (3D distance on the
            input's grid). See :mod:`drdm.physical.steering` for the method.
    """
    return deform_images(model, image, labels, level=level, seeds=[seed], mode=mode, speed=speed,
                         interpolation=interpolation, label_method=label_method, slice_axis=slice_axis,
                         progress=progress, cancel=cancel, slices=slices, precision=precision,
                         cuda_graph=cuda_graph, magnitude=magnitude, keep=keep, only=only, margin=margin)[0]


def deform_images(
    model: DRDMModel,
    image: sitk.Image,
    labels: sitk.Image | None = None,
    *,
    level: int,
    seeds: list[int],
    mode: str = "diffeomorphic",
    speed: str = "faithful",
    interpolation: str = "linear",
    label_method: str = "nearest",
    slice_axis: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    batch: bool | None = None,
    slices: str = DEFAULTS.slices,
    precision: str = DEFAULTS.precision,
    cuda_graph: bool | None = None,
    magnitude: float | None = DEFAULTS.magnitude,
    keep: Sequence[int] = DEFAULTS.keep,
    only: Sequence[int] = DEFAULTS.only,
    margin: float = DEFAULTS.margin,
) -> list[DeformationResult]:
    """:func:`deform_image` for each seed, the sampler running the samples as batches (:func:`compute_fields`).

    ``batch``: run the samples as sampler batches sized by the memory estimate; ``None`` (default) batches on
    CUDA only. On the CPU batching measured 1.39× samples/s at count 8 (2D 256², 2 threads, fast:
    ``benchmarks/batched_samples.py``), but the float32 rounding of batched convolutions, carried through the
    iterative sampler, moves a sample by up to 0.83 voxels; unbatched (the CPU default, ``drdm generate
    --batched`` opts in), sample ``k`` is bit-identical to ``deform_image(..., seed=seeds[k])``.
    ``progress(step, total)`` counts recovery steps over all samples. Each sample's ``statistics["seconds"]`` is
    its share of the batched field computation plus its own warps. ``precision`` and ``cuda_graph``: see
    :func:`deform_image` (the rule sees each sampler batch: on CUDA, a 2D count of 8 runs without the graph).
    ``magnitude``, ``keep``, ``only``, ``margin``: see :func:`deform_image`.
    """
    if interpolation not in INTERPOLATORS:
        raise InputError(f"unknown interpolation {interpolation!r}; choose one of {sorted(INTERPOLATORS)}")
    if label_method not in LABEL_METHODS:
        raise InputError(f"unknown label method {label_method!r}; choose one of {LABEL_METHODS}")
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    started = time.perf_counter()
    regions = plan_regions(None if labels is None else sitk.GetArrayViewFromImage(labels),
                           spacing_array_order(image), keep=tuple(keep), only=tuple(only), margin=float(margin))
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    fields = compute_fields(model, image_array(image), spacing_array_order(image), level=level, generators=generators,
                            mode=mode, speed=speed, slice_axis=slice_axis, progress=progress, cancel=cancel,
                            batch=model.device.type == "cuda" if batch is None else batch, slices=slices,
                            precision=precision, cuda_graph=cuda_graph,
                            magnitude=None if magnitude is None else float(magnitude), regions=regions)
    field_seconds = (time.perf_counter() - started) / len(seeds)
    return [_physical_result(model, image, labels, ddf, grid, result, seed=int(seed), level=level, mode=mode,
                             speed=speed, interpolation=interpolation, label_method=label_method,
                             field_seconds=field_seconds, slices=slices, steering=steering,
                             held=None if regions is None else regions.held())
            for seed, (ddf, grid, result, steering) in zip(seeds, fields)]


def _physical_result(model: DRDMModel, image: sitk.Image, labels: sitk.Image | None, ddf: torch.Tensor,
                     grid: WorkingGrid, result: GenerationResult, *, seed: int, level: int, mode: str, speed: str,
                     interpolation: str, label_method: str, field_seconds: float, slices: str,
                     steering: dict | None = None, held: np.ndarray | None = None) -> DeformationResult:
    """Warp the original image and labels once with ``ddf`` ``(1, ndim, *shape)`` (voxels) and summarise."""
    started = time.perf_counter()
    device = model.device
    field_image = displacement_image(ddf, image)
    transform = displacement_transform(field_image)
    deformed = resample_in_slabs(image, transform, INTERPOLATORS[interpolation], 0.0, image.GetPixelID())
    moved_labels = warp_label_image(labels, transform, label_method) if labels is not None else None
    det = jacobian_determinant_slabs(ddf)
    jacobian = sitk.GetImageFromArray(det[0].numpy())
    jacobian.CopyInformation(image)
    spacing = spacing_array_order(image)
    stats = {key: values[0] for key, values in displacement_statistics(ddf, spacing).items()}
    stats.update({key: values[0] for key, values in determinant_statistics(det).items()})
    if labels is not None:
        stats["segment_volumes"] = segment_volume_changes(labels, moved_labels)
    if steering is not None:  # a size and/or regions: what was asked and what was reached
        stats["magnitude_mm"] = None
        stats.update(steering)
    if grid.slice_axis is not None:  # 2D model on a 3D volume: how smooth the field is through the slices
        stats["slices"] = slices
        stats.update(through_plane_roughness(ddf, spacing, grid.slice_axis))
    stats.update({
        "seed": int(seed), "level": int(level), "mode": mode, "speed": speed, "interpolation": interpolation,
        "model": model.name, "model_sha256": model.sha256, "model_grid": grid.size,
        "working_spacing_mm": grid.working_spacing, "slice_axis": grid.slice_axis,
        "seconds": field_seconds + time.perf_counter() - started, "device": str(device),
        "precision": result.precision, "cuda_graph": result.cuda_graph,
    })
    return DeformationResult(image=deformed, labels=moved_labels, field=field_image, transform=transform,
                             jacobian=jacobian, ddf=ddf, statistics=stats, generation=result, grid=grid, held=held)


def add_inverse(result: DeformationResult, reference: sitk.Image) -> None:
    """Compute the inverse of a diffeomorphic ``result``'s field on ``reference``'s grid (``result.inverse_field``)
    and add its inverse consistency (:func:`drdm.registration.inverse.inverse_consistency`) to ``result.statistics``."""
    if result.statistics.get("mode") != "diffeomorphic":
        raise InputError("the inverse field needs --mode diffeomorphic (reference-mode fields fold: no inverse)")
    started = time.perf_counter()
    inverse = invert_displacement(result.ddf)
    result.statistics.update(inverse_consistency(result.ddf, inverse, spacing_array_order(reference)))
    result.statistics["inverse_seconds"] = time.perf_counter() - started
    result.inverse_field = displacement_image(inverse, reference)
