"""Algorithm 2 of DRDM: instance deformation by random forward noise and step-by-step learned recovery.

``generate`` works on the model's grid: ``image`` is ``(N, 1, *spatial)`` at the model's size with
intensities in the model's range. All fields are in voxels, channel i along array axis i.

Modes:

* ``"reference"`` — the authors' sampler (SPEC §5): forward field at the start level, then 80 network steps
  ``t = 79 … 0``, each composed onto the running field with the preset's padding. Same random stream as
  the reference: with a generator seeded ``s``, ``ddf_random`` equals the reference's for
  ``torch.manual_seed(s)``.
* ``"diffeomorphic"`` — topology preserving: the random field is integrated by scaling and squaring and
  lifted geometrically (:class:`~drdm.noise.ForwardProcess`, ``diffeomorphic=True``), each network step
  is used as a stationary velocity (its exponential is composed), and composition pads with the border.
  Every field stays a diffeomorphism up to interpolation error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .field_statistics import field_statistics
from .kernels.graph_capture import captured_or_eager
from .models import DRDMModel
from .network import convolution_precision
from .noise import DIFFEOMORPHIC_SQUARINGS
from .settings import DEFAULTS, MODES, PRECISIONS, SPEEDS, check_level, look_up_option, use_cuda_graph
from .slice_stack import SliceStack, coherent_scales, scale_slope
from .spatial import (
    DIFFERENCE_SCHEMES,
    compose,
    folds,
    grid_constants,
    integrate,
    jacobian_determinant,
    warp,
    warp_labels,
)

LADDER = {"faithful": 1, "fast": 4, "faster": 8}  # every rung and its stride through the reference schedule
STEP_SQUARINGS = 4  # scaling-and-squaring steps for each network step in diffeomorphic mode
STEP_HALVINGS = 6  # times a folding step is halved before it is skipped


class GenerationCancelled(RuntimeError):
    """Raised by :func:`generate` when its ``cancel`` callback returns True; nothing is returned."""


@dataclass
class DeformationPath:
    """How a diffeomorphic sample was built: stationary velocities whose exponentials, composed in order, give its
    field (working voxels, network orientation; each ``(N, ndim, *spatial)``).

    ``velocities[0]`` is the random field's (integrated with ``squarings[0]`` squarings); each further one is a
    recovery step as it was applied (after any halving; zero where a step was skipped). :meth:`field` replays them:
    with ``scale=1`` and no ``weight`` it gives the sample's field bit for bit; a ``scale`` multiplies every velocity
    (same ingredients, another amount); a ``weight`` ``(N, 1, *spatial)`` in [0, 1] multiplies every velocity
    voxel-wise, so where it is 0 nothing moves. Every exponential and composition of a smooth velocity is a
    diffeomorphism, so the replayed field is one too (up to interpolation error).
    """

    velocities: list[torch.Tensor]
    squarings: list[int]

    def field(self, scale: float = 1.0, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The composed displacement ``(N, ndim, *spatial)`` (voxels) for ``scale`` and ``weight``.

        Every composition is kept fold-free locally: where a scaled or weighted velocity's composition would fold,
        that velocity is attenuated in a smooth neighbourhood of the folding voxels only (:func:`_soften_locally`),
        so a larger ``scale`` or a steep ``weight`` never folds and the rest of the field keeps its size. At
        ``scale=1`` without ``weight`` nothing folds and the sample's field comes back (up to float rounding, below
        1e-4 voxels).
        """
        ddf = torch.zeros_like(self.velocities[0])
        for velocity, squarings in zip(self.velocities, self.squarings):
            if scale != 1.0:
                velocity = velocity * scale
            if weight is not None:
                velocity = velocity * weight
            candidate = compose(ddf, integrate(velocity, squarings, "border"), "border")
            if bool(folds(candidate).any()):
                candidate = _soften_locally(ddf, velocity, squarings)
            ddf = candidate
        return ddf

    def select(self, start: int, stop: int) -> DeformationPath:
        """Batch elements ``start:stop`` (views)."""
        return DeformationPath([v[start:stop] for v in self.velocities], list(self.squarings))


@dataclass
class GenerationResult:
    """Output of :func:`generate` (fields in voxels of the model grid, channel i along array axis i).

    Attributes:
        ddf: ``(N, ndim, *spatial)`` final deformation (pull field: ``image = warp(input, ddf)``).
        ddf_random: ``(N, ndim, *spatial)`` random forward field at the start level.
        image: ``(N, 1, *spatial)`` input deformed by ``ddf``.
        image_random: input deformed by ``ddf_random``.
        labels, labels_random: deformed integer labels (``None`` without labels).
        statistics: :func:`drdm.field_statistics.field_statistics` of ``ddf`` (one value per batch element), with
            ``generate(statistics=True)``; else empty. statistics_random: the same for ``ddf_random``.
        cuda_graph: whether the recovery step was recorded as a CUDA graph (a failed capture warns and runs eagerly).
        precision: the network's float32 arithmetic, ``"exact"`` or ``"tf32"`` (see :func:`generate`).
        path: the :class:`DeformationPath` of the samples (``generate(record_path=True)``, diffeomorphic), else None.
    """

    ddf: torch.Tensor
    ddf_random: torch.Tensor
    image: torch.Tensor
    image_random: torch.Tensor
    labels: torch.Tensor | None
    labels_random: torch.Tensor | None
    start_level: int
    mode: str
    levels: list[int] = field(default_factory=list)
    statistics: dict[str, list[float]] = field(default_factory=dict)
    statistics_random: dict[str, list[float]] = field(default_factory=dict)
    cuda_graph: bool = False
    precision: str = "exact"
    path: DeformationPath | None = None

    def select(self, start: int, stop: int) -> GenerationResult:
        """Batch elements ``start:stop`` of every tensor and statistic (views, no copy)."""
        def part(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x[start:stop]

        return GenerationResult(
            ddf=self.ddf[start:stop], ddf_random=self.ddf_random[start:stop], image=self.image[start:stop],
            image_random=self.image_random[start:stop], labels=part(self.labels), labels_random=part(self.labels_random),
            start_level=self.start_level, mode=self.mode, levels=list(self.levels),
            statistics={k: v[start:stop] for k, v in self.statistics.items()},
            statistics_random={k: v[start:stop] for k, v in self.statistics_random.items()},
            cuda_graph=self.cuda_graph, precision=self.precision,
            path=None if self.path is None else self.path.select(start, stop))


def _validate(model: DRDMModel, image: torch.Tensor, labels: torch.Tensor | None, start_level: int, mode: str) -> None:
    if not isinstance(image, torch.Tensor):
        raise ValueError("image must be a torch tensor (N, 1, *spatial)")
    spatial = image.dim() - 2
    if spatial != model.ndims:
        if model.ndims == 3 and spatial == 2:
            raise ValueError("a 3D model cannot deform a 2D image")
        raise ValueError(f"a {model.ndims}D model needs an image of shape (N, 1, *{model.ndims} sizes), got {tuple(image.shape)}")
    channels = model.network.in_channels if model.learned else 1
    if image.shape[1] != channels:
        raise ValueError(f"image must have {channels} channel(s), got {image.shape[1]}")
    if not image.is_floating_point():
        raise ValueError("image must be a floating-point tensor")
    if len(set(image.shape[2:])) != 1 or image.shape[2] % 8:
        raise ValueError(f"image must be square/cubic with a side divisible by 8 (the model's grid is {model.size}), "
                         f"got {tuple(image.shape[2:])}")
    if not torch.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values")
    if labels is not None:
        if not isinstance(labels, torch.Tensor) or labels.is_floating_point():
            raise ValueError("labels must be an integer tensor (N, 1, *spatial)")
        if labels.shape != (image.shape[0], 1) + tuple(image.shape[2:]):
            raise ValueError(f"labels shape {tuple(labels.shape)} does not match image shape {tuple(image.shape)}")
    look_up_option(mode, MODES, "mode")
    if not model.learned and mode != "diffeomorphic":
        raise ValueError(f"model {model.name!r} is the random field only (no learned recovery), which is always "
                         "diffeomorphic: use mode 'diffeomorphic' (the reference mode needs a learned model)")
    check_level(start_level, model.num_steps)


def _compose_without_folding(ddf: torch.Tensor, step: torch.Tensor, candidate: torch.Tensor,
                             folded: torch.Tensor, stack: SliceStack | None = None,
                             slope: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Compose ``exp(step)`` onto a fold-free ``ddf`` (border padding) so that the result stays fold-free; returns
    the composed field and the velocity that was applied (``step`` times each element's final scale).

    ``candidate`` is the full step's composition and ``folded`` its :func:`~drdm.spatial.folds`. A batch element
    whose composition folds has its step halved and retried; after :data:`STEP_HALVINGS` tries in all that
    element keeps its previous field. With ``stack`` (stacks of neighbouring slices), the neighbours' step
    scales follow within ``slope`` per working voxel (:func:`~drdm.slice_stack.coherent_scales`), so no slice
    is torn from the next.
    """
    shape = (-1,) + (1,) * (ddf.dim() - 1)
    scale = torch.ones(ddf.shape[0], dtype=ddf.dtype, device=ddf.device)

    def retry(new_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if stack is not None:
            new_scale = coherent_scales(new_scale, stack, slope)
        moved = compose(ddf, integrate(step * new_scale.reshape(shape), STEP_SQUARINGS, "border"), "border")
        return new_scale, moved, folds(moved)

    for _ in range(STEP_HALVINGS - 1):
        if not bool(folded.any()):
            return candidate, step * scale.reshape(shape)
        scale, candidate, folded = retry(torch.where(folded, scale * 0.5, scale))
    if not bool(folded.any()):
        return candidate, step * scale.reshape(shape)
    if stack is not None:
        scale, candidate, folded = retry(torch.where(folded, torch.zeros_like(scale), scale))
    scale = torch.where(folded, torch.zeros_like(scale), scale)
    return torch.where(folded.reshape(shape), ddf, candidate), step * scale.reshape(shape)


SOFTEN_TRIES = 8  # local attenuations tried before a folding velocity is left out
SOFTEN_MIN_RADIUS = 4  # voxels: the smallest neighbourhood of folding voxels that an attenuation covers
SOFTEN_FACTOR = 0.3  # the attenuation at the folding voxels drops by this fraction per try


def _box(x: torch.Tensor, radius: int, reduce: str) -> torch.Tensor:
    """Separable box filter of half-width ``radius`` over the spatial axes of ``(N, 1, *spatial)``: ``"max"`` or
    ``"mean"`` (the mean over the voxels inside the array)."""
    ndim = x.dim() - 2
    width = 2 * radius + 1
    for axis in range(ndim):
        kernel = tuple(width if a == axis else 1 for a in range(ndim))
        padding = tuple(radius if a == axis else 0 for a in range(ndim))
        if reduce == "max":
            x = (F.max_pool2d if ndim == 2 else F.max_pool3d)(x, kernel, stride=1, padding=padding)
        else:
            x = (F.avg_pool2d if ndim == 2 else F.avg_pool3d)(x, kernel, stride=1, padding=padding,
                                                             count_include_pad=False)
    return x


def _soften_locally(ddf: torch.Tensor, velocity: torch.Tensor, squarings: int) -> torch.Tensor:
    """Compose ``exp(a * velocity)`` onto a fold-free ``ddf`` with an attenuation ``a(x)`` in (0, 1] that is below 1
    only around voxels where the composition folds.

    Each try halves ``a`` in a smooth bump over the folding voxels whose half-width is the largest attenuated speed
    there (at least :data:`SOFTEN_MIN_RADIUS` voxels): a fast velocity needs a wide, gentle slow-down, or the
    slow-down itself compresses the tissue at its edge. After :data:`SOFTEN_TRIES` tries an element that still folds
    keeps ``ddf``."""
    attenuation = torch.ones_like(velocity[:, :1])
    limit = max(SOFTEN_MIN_RADIUS, min(velocity.shape[2:]) // 4)
    for _ in range(SOFTEN_TRIES):
        candidate = compose(ddf, integrate(velocity * attenuation, squarings, "border"), "border")
        bad = torch.stack([jacobian_determinant(candidate, scheme) <= 0 for scheme in DIFFERENCE_SCHEMES]).any(0)
        if not bool(bad.any()):
            return candidate
        speed = float((velocity * attenuation).norm(dim=1)[bad].max())
        radius = int(min(max(SOFTEN_MIN_RADIUS, math.ceil(speed)), limit))
        bump = _box(_box(bad[:, None].to(velocity.dtype), radius, "max"), radius, "mean")
        attenuation = attenuation * (1.0 - SOFTEN_FACTOR * bump.clamp(0.0, 1.0))
    folded = folds(candidate).reshape((-1,) + (1,) * (ddf.dim() - 1))
    return torch.where(folded, ddf, candidate)


def _recovery_step(network: torch.nn.Module, image: torch.Tensor, rec_num: int, interpolation: str, padding: str,
                   diffeomorphic: bool) -> Callable[..., tuple[torch.Tensor, ...]]:
    """One recovery step as a function of ``(ddf, current, t)`` without host synchronisation (CUDA-graph safe).

    Reference mode returns ``(ddf, current)``; diffeomorphic mode returns ``(step, candidate, folded, moved)``:
    the full step's exponential composed onto ``ddf``, whether that folds, and the image moved by it.
    """
    size = image.shape[2]

    def reference(ddf: torch.Tensor, current: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ddf = compose(ddf, network(current, t, rec_num=rec_num) * size, padding=padding)
        return ddf, warp(image, ddf, interpolation, "zeros")

    def topology_preserving(ddf: torch.Tensor, current: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        step = network(current, t, rec_num=rec_num) * size
        candidate = compose(ddf, integrate(step, STEP_SQUARINGS, "border"), "border")
        return step, candidate, folds(candidate), warp(image, candidate, interpolation, "zeros")

    return topology_preserving if diffeomorphic else reference


def _random_field(process, start_level: int, size: int, batch: int,
                  generator: torch.Generator | Sequence[torch.Generator] | None, device: torch.device,
                  diffeomorphic: bool, stack: SliceStack | None = None,
                  velocity: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The forward field ``(batch, ndim, *spatial)`` in voxels, and with ``velocity`` (diffeomorphic only) the
    stationary velocity it integrates (else None); one draw per generator group (see ``generate``)."""
    def draw(count: int, source: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if velocity:
            return process.sample_velocity(start_level, size, batch=count, generator=source, device=device,
                                           stack=stack)
        return process.sample(start_level, size, batch=count, generator=source, device=device,
                              diffeomorphic=diffeomorphic, target=False, stack=stack)[0], None

    if generator is None or isinstance(generator, torch.Generator):
        return draw(batch, generator)
    generators = list(generator)
    if not generators or batch % len(generators):
        raise ValueError(f"{len(generators)} generators cannot split a batch of {batch} into equal groups")
    parts = [draw(batch // len(generators), g) for g in generators]
    fields = torch.cat([field for field, _ in parts])
    return fields, torch.cat([v for _, v in parts]) if velocity else None


def _recovery_levels(model: DRDMModel, speed: str, levels: list[int] | None) -> list[int]:
    """The recovery time steps in order for ``speed`` (``levels`` only with ``"faithful"``); none for a random-field
    model."""
    look_up_option(speed, SPEEDS, "speed")
    if speed != "faithful":
        if levels is not None:
            raise ValueError(f"speed {speed!r} chooses its own recovery levels: pass levels only with speed 'faithful'")
        levels = list(range(model.num_steps - 1, -1, -LADDER[speed]))
    levels = list(range(model.num_steps - 1, -1, -1)) if levels is None else [int(t) for t in levels]
    if any(not 0 <= t < model.num_steps for t in levels):
        raise ValueError(f"recovery levels must lie in [0, {model.num_steps - 1}]")
    return levels if model.learned else []  # random field only: no recovery steps


def generate(
    model: DRDMModel,
    image: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    start_level: int,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    mode: str,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    rec_num: int = 2,
    levels: list[int] | None = None,
    label_method: str = DEFAULTS.label_method,
    image_interpolation: str | None = None,
    speed: str,
    cuda_graph: bool | None = None,
    stack: SliceStack | None = None,
    precision: str = DEFAULTS.precision,
    record_path: bool = False,
    statistics: bool = False,
) -> GenerationResult:
    """Deform ``image`` (and ``labels``) with a new DRDM deformation.

    Args:
        model: a loaded :class:`~drdm.models.DRDMModel`. A random-field-only model (``model.learned`` False)
            runs no recovery step: the result is the diffeomorphic random field at ``start_level``
            (``ddf == ddf_random``; diffeomorphic mode only).
        image: ``(N, 1, *spatial)`` float tensor on the model's grid (square/cubic, side divisible by 8),
            intensities in the model's range ([0, 1] for the reference models).
        labels: optional ``(N, 1, *spatial)`` integer label map; deformed with ``label_method``
            (``"nearest"`` or ``"onehot"``), so label values are preserved exactly.
        start_level: noise level T′ of the random field (reference CMR: 48 … 80).
        generator: random source; the same seed gives identical bytes on CPU. A sequence of ``G`` generators
            splits the batch into ``G`` equal consecutive groups, group ``k`` drawn from generator ``k``: the
            samples of one batched call equal ``G`` separate calls (one generator each) up to the float32
            rounding of batched convolutions (below 1e-3 voxels in the tests).
        mode: ``"reference"`` (the authors' sampler) or ``"diffeomorphic"`` (see module docstring); no default: the
            front ends decide it (:data:`drdm.settings.DEFAULTS`).
        progress: called as ``progress(step, total)`` after every recovery step.
        cancel: polled before every step; returning True raises :class:`GenerationCancelled`.
        rec_num: refinement passes per network call (reference: 2).
        levels: recovery time steps in order (default ``T-1 … 0``, the reference's 80 steps).
        image_interpolation: image warp mode (default: the model preset's, cubic for CMR).
        speed (no default,
            like ``mode``): ``"faithful"`` (the reference schedule: ``levels`` and ``rec_num`` as given) or ``"fast"``
            (every fourth level of the reference schedule, 20 network calls instead of 80; ``levels`` must then be
            ``None``: a ValueError says so).
            Measured on the CMR sample (diffeomorphic mode, T' = 56, 16 seeds): 4.0× faster, mean/p95 |u|
            within 2 %, no folding (``benchmarks/fast_modes.py``). ``"faster"`` (every eighth level, 10 calls):
            8.0× faster, mean |u| +3.0 %, p95 +2.6 %, no folding over 16 seeds
            (``benchmarks/results/fast_modes_ladder.md``).
        cuda_graph: on a CUDA device, record the recovery step once as a CUDA graph and replay it: the same
            kernels on the same data, so the eager step's outputs with fewer launches (:mod:`drdm.kernels.graph_capture`;
            a capture that fails warns and runs eagerly). ``None`` (default): decided by
            :func:`drdm.settings.cuda_graph_by_rule` — on for a 2D model at batches up to 4, off in 3D and for larger
            batches (H200: 2D 256² batch 1 1.6–3.5× faster with equal samples; batch 8+ and 3D 3–13 % slower).
            True/False: obeyed (True is ignored on the CPU).
        precision: the network's float32 arithmetic on a GPU (:func:`~drdm.network.convolution_precision`):
            ``"exact"`` (default: TF32 off, the reference vectors within 1e-5) or ``"tf32"`` (TF32 allowed; its
            speed-up and effect on the samples are waiting for a GPU measurement). Identical on the CPU.
        stack: the images are neighbouring slices of one volume (2D model; every generator group one stack of
            ``len(stack)`` slices at ``stack.positions``, working voxels): the random field is smooth through the
            slices with each slice's 2D statistics kept, and fold back-offs are shared smoothly between
            neighbours (:mod:`drdm.slice_stack`). ``None``: independent images (the authors' way).
        record_path: keep the :class:`DeformationPath` (the velocities composed, diffeomorphic mode only) in
            ``result.path``, so the sample can be replayed at another size or with a spatial weight
            (:mod:`drdm.physical.steering`); the fields themselves are unchanged.
        statistics: also summarise the fields on the model grid (``result.statistics``, ``statistics_random``:
            :func:`drdm.field_statistics.field_statistics`); off by default, because the physical layer measures the
            field once, on the input's own grid.

    Returns:
        :class:`GenerationResult` (fields in voxels).
    """
    _validate(model, image, labels, start_level, mode)
    process = model.forward_process()
    interpolation = image_interpolation or process.image_interpolation
    padding = process.composition_padding if mode == "reference" else "border"
    diffeomorphic = mode == "diffeomorphic"
    look_up_option(precision, PRECISIONS, "precision")
    levels = _recovery_levels(model, speed, levels)
    if record_path and not diffeomorphic:
        raise ValueError("record_path needs mode 'diffeomorphic' (the reference sampler composes raw displacements)")
    network = model.network
    size = image.shape[2]
    batch = image.shape[0]
    device = model.device
    image = image.to(device=device, dtype=torch.float32)

    graph = use_cuda_graph(cuda_graph, device.type, model.ndims, batch) and bool(levels) and device.type == "cuda"
    with torch.no_grad(), convolution_precision(precision):
        ddf_random, velocity_random = _random_field(process, start_level, size, batch, generator, device, diffeomorphic,
                                                    stack, velocity=record_path)
        path = DeformationPath([velocity_random], [DIFFEOMORPHIC_SQUARINGS]) if record_path else None
        image_random = warp(image, ddf_random, interpolation, "zeros")
        ddf, current = ddf_random, image_random
        step_once = _recovery_step(network, image, rec_num, interpolation, padding, diffeomorphic)
        if graph:
            first = torch.full((batch,), levels[0], dtype=torch.long, device=device)
            eager = step_once
            step_once = captured_or_eager(step_once, (ddf, current, first),
                                          keep_alive=(image, grid_constants(tuple(image.shape[2:]), device)))
            graph = step_once is not eager  # False when the capture failed (it warned)
        for index, t in enumerate(levels):
            if cancel is not None and cancel():
                raise GenerationCancelled(f"generation cancelled after {index} of {len(levels)} recovery steps")
            t_batch = torch.full((batch,), t, dtype=torch.long, device=device)
            if diffeomorphic:
                step, candidate, folded, moved = step_once(ddf, current, t_batch)
                if bool(folded.any()):  # rare: halve the folding elements' steps, eagerly
                    candidate, step = _compose_without_folding(ddf, step, candidate, folded, stack,
                                                               scale_slope(size, min(process.scales)))
                    moved = warp(image, candidate, interpolation, "zeros")
                if path is not None:
                    path.velocities.append(step.clone())  # a replayed graph overwrites its outputs
                    path.squarings.append(STEP_SQUARINGS)
                ddf, current = candidate, moved
            else:
                ddf, current = step_once(ddf, current, t_batch)
            if progress is not None:
                progress(index + 1, len(levels))
        moved_labels = moved_labels_random = None
        if labels is not None:
            labels = labels.to(device)
            moved_labels = warp_labels(labels, ddf, label_method)
            moved_labels_random = warp_labels(labels, ddf_random, label_method)
    return GenerationResult(
        ddf=ddf, ddf_random=ddf_random, image=current, image_random=image_random,
        labels=moved_labels, labels_random=moved_labels_random, start_level=int(start_level), mode=mode,
        levels=levels, statistics=field_statistics(ddf) if statistics else {},
        statistics_random=field_statistics(ddf_random) if statistics else {},
        cuda_graph=graph, precision=precision, path=path,
    )
