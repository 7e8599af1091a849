"""Deform a real image in physical space: working grid → DRDM sampler → field in mm on the original grid →
one full-resolution warp of the image and labels with the ITK transform that is also written to disk.

Because the deformed image is produced by ``SimpleITK.Resample(original, original, transform, interpolator)``
with the very transform returned (and written), anyone can reproduce it from the transform file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import MEMORY_ADVICE, OutOfMemory
from ..models import DRDMModel
from ..registration.inverse import inverse_consistency, invert_displacement
from ..sampler import GenerationResult, generate
from ..settings import INTERPOLATIONS, DeformationSettings, check_level, slices_option_applies
from ..slice_stack import slice_stack
from ..spatial import warp
from .field_summary import summarise_field
from .geometry import WorkingGrid, plan_working_grid
from .io import InputError, displacement_image, displacement_transform, image_array, spacing_array_order
from .segment_volumes import segment_volume_changes
from .slice_coherence import through_plane_roughness
from .steering import Regions, SteeringError, plan_regions, steer

INTERPOLATORS = dict(zip(INTERPOLATIONS, (sitk.sitkLinear, sitk.sitkBSpline, sitk.sitkNearestNeighbor)))  # SimpleITK's
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
    check_level(level, model.num_steps)
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
    return slice_stack(slices, grid.batch if sliced else None,
                       grid.spacing[grid.slice_axis] / grid.working_spacing if sliced else 1.0)


def compute_fields(model: DRDMModel, array: torch.Tensor, spacing: tuple[float, ...], settings: DeformationSettings, *,
                   generators: list[torch.Generator], regions: Regions | None = None, slice_axis: int | None = None,
                   progress: Callable[[int, int], None] | None = None, cancel: Callable[[], bool] | None = None,
                   batch: bool = True,
                   cuda_graph: bool | None = None) -> list[tuple[torch.Tensor, WorkingGrid, GenerationResult, dict | None]]:
    """One DRDM deformation field per generator, run as sampler batches of :func:`samples_per_chunk` samples
    (``batch`` False: one sample per sampler run, bit-identical to :func:`compute_field`).

    ``settings``: level (None: the model's first), mode, speed, slices, precision, magnitude
    (:class:`drdm.settings.DeformationSettings`; its seed is not used: the generators are). Each sample equals a run of
    :func:`compute_field` with its generator (up to the float32 rounding of batched convolutions: below 1e-3 voxels in
    the tests). ``progress(step, total)`` counts recovery steps over all chunks. ``regions``, ``cuda_graph``: see
    :func:`compute_field`. Returns ``(ddf, grid, generation, steering)`` per generator, in their order: the first
    three as :func:`compute_field` returns them, ``steering`` the statistics of :func:`drdm.physical.steering.steer`
    (None without a size or regions).
    """
    level = settings.start_level(model.num_steps, model.forward_process().first_level)
    grid = _plan(model, array, spacing, level, slice_axis)
    stack = _stack(grid, settings.slices)
    magnitude = settings.magnitude
    steered = magnitude is not None or regions is not None
    if regions is not None and settings.mode != "diffeomorphic":
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
        result = generate(model, batch, start_level=level, generator=group, mode=settings.mode, speed=settings.speed,
                          progress=step, cancel=cancel, stack=stack, precision=settings.precision,
                          cuda_graph=cuda_graph, record_path=steered)
        per = working.shape[0]
        for k in range(len(group)):
            part = result.select(k * per, (k + 1) * per)
            if not steered:
                out.append((grid.field_to_original(part.ddf).cpu(), grid, part, None))
                continue
            field = steer(part, grid, magnitude=None if magnitude is None else float(magnitude), regions=regions)
            part = replace(part, ddf=field.working, path=None,
                           image=warp(working, field.working, process.image_interpolation, "zeros"))
            out.append((field.ddf.cpu(), grid, part, field.statistics))
    return out


def compute_field(model: DRDMModel, array: torch.Tensor, spacing: tuple[float, ...], settings: DeformationSettings, *,
                  generator: torch.Generator | None, regions: Regions | None = None, slice_axis: int | None = None,
                  progress: Callable[[int, int], None] | None = None, cancel: Callable[[], bool] | None = None,
                  cuda_graph: bool | None = None) -> tuple[torch.Tensor, WorkingGrid, GenerationResult]:
    """A DRDM deformation field for an image array, on the array's own grid.

    Args:
        array: the image in array order (``(z, y, x)`` or ``(y, x)``), any real dtype, any device.
        spacing: mm per voxel in array order.
        settings: level (None: the model's first), mode, speed, slices (a 2D model on a 3D volume: ``"coherent"``,
            one field smooth through the slices, or ``"independent"``, the authors' way), precision and magnitude (the
            mean |u| in mm to reach over the voxels ``regions`` allow; None: the model's own size); the random draw
            comes from ``generator``, not ``settings.seed``.
        regions: structures kept still or alone deformed (:func:`drdm.physical.steering.plan_regions`), or None.
            A magnitude or regions need mode ``"diffeomorphic"`` (:mod:`drdm.physical.steering`).
        cuda_graph: ``None`` (default): the rule of :func:`drdm.settings.cuda_graph_by_rule` for the sampler batch;
            True/False: obeyed.

    Returns:
        ``(ddf, grid, generation)``: ``ddf`` ``(1, ndim, *array.shape)`` float32 on the CPU, in voxels of the
        array, channel i along array axis i (pull field); the working grid used; the working-grid result.
    """
    if settings.magnitude is not None or regions is not None:
        ddf, grid, result, _ = compute_fields(model, array, spacing, settings, generators=[generator], regions=regions,
                                              slice_axis=slice_axis, progress=progress, cancel=cancel, batch=False,
                                              cuda_graph=cuda_graph)[0]
        return ddf, grid, result
    level = settings.start_level(model.num_steps, model.forward_process().first_level)
    grid = _plan(model, array, spacing, level, slice_axis)
    stack = _stack(grid, settings.slices)
    working = grid.to_working(array.to(model.device))
    result = generate(model, working, start_level=level, generator=generator, mode=settings.mode, speed=settings.speed,
                      progress=progress, cancel=cancel, stack=stack, precision=settings.precision, cuda_graph=cuda_graph)
    return grid.field_to_original(result.ddf).cpu(), grid, result


def deform_image(model: DRDMModel, image: sitk.Image, labels: sitk.Image | None = None, *,
                 settings: DeformationSettings, slice_axis: int | None = None,
                 progress: Callable[[int, int], None] | None = None, cancel: Callable[[], bool] | None = None,
                 cuda_graph: bool | None = None) -> DeformationResult:
    """Generate one DRDM deformation of ``image`` (and ``labels``) in physical space.

    Args:
        model: a loaded model (its device is used).
        image: 2D or 3D scalar SimpleITK image, any spacing / origin / direction.
        labels: optional integer label map on the same grid.
        settings: how (:class:`drdm.settings.DeformationSettings`, built once by the front end): ``level`` (None:
            the model's first level), ``seed`` (None: drawn, :func:`drdm.settings.draw_seed`, and recorded; the
            same seed gives the same result on the CPU), ``mode``, ``speed``, ``interpolation``, ``label_method``,
            ``slices``, ``precision``, ``magnitude`` (the size in mm: the mean |u| over the image, or over where
            ``keep``/``only`` allow motion, reached within 2 %; the same seed keeps its shape at every size; up to
            1.5× the model's own size where the field can grow that far without folding, else a one-line error naming
            the reachable size), ``keep``/``only`` (label values held still / alone deformed; need ``labels``) and
            ``margin`` (mm, the smooth transition around them; :mod:`drdm.physical.steering`). ``count`` is not used:
            one deformation, seed ``settings.seed`` (:func:`deform_images` makes ``count``).
        slice_axis: array axis (z, y, x order) sliced when a 2D model deforms a 3D volume.
        cuda_graph: the CUDA-graph recovery step; ``None`` (default) decides by
            :func:`drdm.settings.cuda_graph_by_rule`, True/False are obeyed.
    """
    return deform_images(model, image, labels, settings=settings.but(count=1), slice_axis=slice_axis,
                         progress=progress, cancel=cancel, cuda_graph=cuda_graph)[0]


def deform_images(model: DRDMModel, image: sitk.Image, labels: sitk.Image | None = None, *,
                  settings: DeformationSettings, slice_axis: int | None = None,
                  progress: Callable[[int, int], None] | None = None, cancel: Callable[[], bool] | None = None,
                  batch: bool | None = None, cuda_graph: bool | None = None) -> list[DeformationResult]:
    """``settings.count`` deformations of ``image`` (seeds ``seed … seed + count − 1``; the seed drawn once when
    unset), the sampler running the samples as batches (:func:`compute_fields`); each as :func:`deform_image`.

    ``batch``: run the samples as sampler batches sized by the memory estimate; ``None`` (default) batches on
    CUDA only. On the CPU batching measured 1.39× samples/s at count 8 (2D 256², 2 threads, fast:
    ``benchmarks/batched_samples.py``), but the float32 rounding of batched convolutions, carried through the
    iterative sampler, moves a sample by up to 0.83 voxels; unbatched (the CPU default, ``drdm generate
    --batched`` opts in), sample ``k`` is bit-identical to ``deform_image`` with seed ``seed + k``.
    ``progress(step, total)`` counts recovery steps over all samples. Each sample's ``statistics["seconds"]`` is
    its share of the batched field computation plus its own warps. ``cuda_graph``: see :func:`deform_image` (the
    rule sees each sampler batch: on CUDA, a 2D count of 8 runs without the graph).
    """
    settings = settings.for_model(model)
    started = time.perf_counter()
    regions = plan_regions(None if labels is None else sitk.GetArrayViewFromImage(labels),
                           spacing_array_order(image), keep=settings.keep, only=settings.only,
                           margin=float(settings.margin))
    seeds = settings.seeds()
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    fields = compute_fields(model, image_array(image), spacing_array_order(image), settings, generators=generators,
                            regions=regions, slice_axis=slice_axis, progress=progress, cancel=cancel,
                            batch=model.device.type == "cuda" if batch is None else batch, cuda_graph=cuda_graph)
    field_seconds = (time.perf_counter() - started) / len(seeds)
    return [_physical_result(model, image, labels, ddf, grid, result, settings.but(seed=seed), field_seconds=field_seconds,
                             steering=steering, held=None if regions is None else regions.held())
            for seed, (ddf, grid, result, steering) in zip(seeds, fields)]


def _physical_result(model: DRDMModel, image: sitk.Image, labels: sitk.Image | None, ddf: torch.Tensor,
                     grid: WorkingGrid, result: GenerationResult, settings: DeformationSettings, *, field_seconds: float,
                     steering: dict | None = None, held: np.ndarray | None = None) -> DeformationResult:
    """Warp the original image and labels once with ``ddf`` ``(1, ndim, *shape)`` (voxels) and summarise
    (``settings``: concrete, with this sample's seed)."""
    interpolation, label_method = settings.interpolation, settings.label_method
    started = time.perf_counter()
    device = model.device
    field_image = displacement_image(ddf, image)
    transform = displacement_transform(field_image)
    deformed = resample_in_slabs(image, transform, INTERPOLATORS[interpolation], 0.0, image.GetPixelID())
    moved_labels = warp_label_image(labels, transform, label_method) if labels is not None else None
    jacobian, stats = summarise_field(ddf, image)
    spacing = spacing_array_order(image)
    if labels is not None:
        stats["segment_volumes"] = segment_volume_changes(labels, moved_labels)
    if steering is not None:  # a size and/or regions: what was asked and what was reached
        stats["magnitude_mm"] = None
        stats.update(steering)
    if slices_option_applies(model.ndims, grid.shape):  # 2D model on a volume: how smooth it is through the slices
        stats["slices"] = settings.slices
        stats.update(through_plane_roughness(ddf, spacing, grid.slice_axis))
    stats.update({
        "seed": int(settings.seed), "level": int(settings.level), "mode": settings.mode, "speed": settings.speed,
        "interpolation": interpolation,
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
        raise InputError("the inverse field needs `mode` diffeomorphic (reference-mode fields fold: no inverse)")
    started = time.perf_counter()
    inverse = invert_displacement(result.ddf)
    result.statistics.update(inverse_consistency(result.ddf, inverse, spacing_array_order(reference)))
    result.statistics["inverse_seconds"] = time.perf_counter() - started
    result.inverse_field = displacement_image(inverse, reference)
