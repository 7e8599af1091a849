"""Training images for DRDM: files resampled to the training grid, or procedural phantoms; augmentation.

Every random choice of one training sample comes from its own generator, seeded from
``(seed, step, index in the global batch)`` (:func:`sample_generator`). A sample is therefore the same
whether the batch is processed by one process or split across DistributedDataParallel ranks, and training
resumed from a checkpoint continues exactly as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from ..physical.io import InputError, read_image, spacing_array_order, validate_image, write_atomically
from ..spatial import resample_affine
from .phantoms import cardiac_phantom

VALIDATION_PHANTOM_SEED = 100_000  # validation phantoms use seeds from here on (training: 0 .. count-1)
SPLIT_KEY = 2**31 - 1  # generator key of the training/validation split (steps never reach it)


def sample_generator(*key: int) -> torch.Generator:
    """A CPU generator seeded from integers (``seed, step, index``), independent for different keys."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def normalise_minmax(x: torch.Tensor) -> torch.Tensor:
    """``(x − min) / (max − min + 1e-7)``: the intensity normalisation the models expect."""
    return (x - x.min()) / (x.max() - x.min() + 1e-7)


def _square_and_resize(array: torch.Tensor, spacing: tuple[float, ...], size: int) -> torch.Tensor:
    """Pad an array (background = its minimum) to a square/cubic physical extent, then resize to ``size``."""
    extents = [n * s for n, s in zip(array.shape, spacing)]
    target = max(extents)
    pads = []
    for n, s in zip(reversed(array.shape), reversed(spacing)):
        extra = max(int(round(target / s - n)), 0)
        pads += [extra // 2, extra - extra // 2]
    x = F.pad(array[None, None], pads, value=float(array.min()))
    mode = "bilinear" if array.dim() == 2 else "trilinear"
    x = F.interpolate(x, size=(size,) * array.dim(), mode=mode, align_corners=False, antialias=array.dim() == 2)
    return normalise_minmax(x[0])


CACHE_VERSION = 1  # bump when the preprocessing changes: older cache entries are then ignored


def cache_file(cache: Path, path: Path, ndims: int, size: int) -> Path:
    """Where the preprocessed images of ``path`` live in ``cache``: keyed by the file (absolute path, size,
    modification time) and the preprocessing (dimensionality, training size, :data:`CACHE_VERSION`)."""
    stat = Path(path).stat()
    key = f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{ndims}|{size}|{CACHE_VERSION}"
    return Path(cache) / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.pt"


def load_training_images(paths: list[Path], ndims: int, size: int, cache: Path | None = None) -> list[torch.Tensor]:
    """Read images and return ``(1, *[size]*ndims)`` tensors in [0, 1].

    A 2D model takes every slice of a 3D volume along the axis of largest spacing (the first array axis
    when isotropic); constant slices are skipped. With ``cache`` (a folder), each file's result is kept there
    and reused while the file is unchanged (reading and resampling large volumes is then done once). Raises
    :class:`~drdm.physical.io.InputError` for unreadable files.
    """
    images = []
    for path in paths:
        stored = cache_file(cache, path, ndims, size) if cache is not None and Path(path).is_file() else None
        if stored is not None and stored.is_file():
            images.extend(torch.load(stored, weights_only=True))
            continue
        found = _preprocess(path, ndims, size)
        if stored is not None:
            stored.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(stored, lambda temporary, found=found: torch.save(found, temporary))
        images.extend(found)
    return images


def _preprocess(path: Path, ndims: int, size: int) -> list[torch.Tensor]:
    """The training images of one file (see :func:`load_training_images`)."""
    images = []
    image = read_image(path)
    validate_image(image, f"training image {path}")
    array = torch.from_numpy(sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32))).float()
    spacing = spacing_array_order(image)
    if array.dim() == ndims:
        images.append(_square_and_resize(array, spacing, size))
    elif ndims == 2 and array.dim() == 3:
        axis = int(np.argmax(spacing)) if len(set(spacing)) > 1 else 0
        in_plane = tuple(s for a, s in enumerate(spacing) if a != axis)
        for k in range(array.shape[axis]):
            plane = array.select(axis, k)
            if float(plane.max() - plane.min()) > 0:
                images.append(_square_and_resize(plane, in_plane, size))
    else:
        raise InputError(f"training image {path}: a {ndims}D model cannot train on a {array.dim()}D image")
    return images


def split_for_validation(items: list, fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic split ``(training, validation)``; at least one of each when there are two items or more."""
    order = torch.randperm(len(items), generator=sample_generator(seed, SPLIT_KEY)).tolist()
    count = min(max(int(math.ceil(fraction * len(items))), 1 if fraction > 0 else 0), len(items) - 1) if len(items) > 1 else 0
    validation = sorted(order[:count])
    training = sorted(order[count:])
    return [items[i] for i in training], [items[i] for i in validation]


@dataclass
class TrainingImages:
    """Where training and validation images come from: a list of tensors, or procedural phantoms."""

    ndims: int
    size: int
    training: list[torch.Tensor] | None = None  # None: phantoms
    validation: list[torch.Tensor] | None = None
    phantom_count: int = 64
    description: str = ""
    phantom_texture: float = 0.0

    @classmethod
    def phantoms(cls, ndims: int, size: int, count: int = 64, texture: float = 0.0) -> TrainingImages:
        """The procedural cardiac phantoms of :mod:`drdm.training.phantoms` (seeds 0..count-1; validation: others),
        with fine texture of amplitude ``texture``."""
        return cls(ndims, size, None, None, count,
                   f"{count} procedural cardiac phantoms (drdm.training.phantoms.cardiac_phantom, seeds 0-{count - 1}, "
                   f"fine texture {texture:g})", texture)

    @classmethod
    def from_files(cls, paths: list[Path], ndims: int, size: int, validation_fraction: float, seed: int,
                   cache: Path | None = None) -> TrainingImages:
        """Images read from ``paths`` (preprocessed once into ``cache`` when given); a fraction of the *files* is
        held out for validation."""
        if not paths:
            raise InputError("no training images found")
        train_paths, val_paths = split_for_validation(list(paths), validation_fraction, seed)
        training = load_training_images(train_paths, ndims, size, cache)
        validation = load_training_images(val_paths, ndims, size, cache)
        if not training:
            raise InputError("no usable (non-constant) training images")
        names = ", ".join(p.name for p in paths[:3]) + (", …" if len(paths) > 3 else "")
        return cls(ndims, size, training, validation, 0,
                   f"{len(paths)} image files ({names}); {len(train_paths)} for training "
                   f"({len(training)} {ndims}D images), {len(val_paths)} held out")

    def training_image(self, generator: torch.Generator) -> torch.Tensor:
        """One training image ``(1, *spatial)`` chosen with ``generator``."""
        if self.training is None:
            seed = int(torch.randint(self.phantom_count, (1,), generator=generator))
            return cardiac_phantom(self.size, self.ndims, seed=seed, fine_texture=self.phantom_texture)[0][0]
        return self.training[int(torch.randint(len(self.training), (1,), generator=generator))]

    def validation_image(self, index: int) -> torch.Tensor | None:
        """The ``index``-th validation image (cycled), or ``None`` without validation images."""
        if self.training is None:
            return cardiac_phantom(self.size, self.ndims, seed=VALIDATION_PHANTOM_SEED + index,
                                   fine_texture=self.phantom_texture)[0][0]
        if not self.validation:
            return None
        return self.validation[index % len(self.validation)]


def _uniform(generator: torch.Generator, low: float, high: float, shape: tuple[int, ...] = ()) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


def _rotation_3d(axis: torch.Tensor, angle: float) -> torch.Tensor:
    axis = axis / axis.norm().clamp_min(1e-12)
    k = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def geometric_augmentation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """SPEC §6 step 1. 2D: p 0.8 random rotation (±180°) and translation (≤12.5 % per axis), vertical flip
    p 0.5, min-max stretch p 0.5. 3D: p 0.6 rotation about a random axis (±180°), p 0.8 random cubic crop of
    side 0.6–1 of the volume resized back. Linear interpolation, zero fill."""
    ndims = x.dim() - 1
    if ndims == 2:
        if float(_uniform(generator, 0, 1)) < 0.8:
            angle = float(_uniform(generator, -math.pi, math.pi))
            shift = _uniform(generator, -0.25, 0.25, (2,))  # normalised units: 0.25 = 12.5 % of the side
            matrix = torch.tensor([[math.cos(angle), -math.sin(angle), shift[0]],
                                   [math.sin(angle), math.cos(angle), shift[1]]], dtype=torch.float64)
            x = resample_affine(x, matrix.float())
        if float(_uniform(generator, 0, 1)) < 0.5:
            x = torch.flip(x, dims=(1,))
        if float(_uniform(generator, 0, 1)) < 0.5:
            x = normalise_minmax(x)
        return x
    if float(_uniform(generator, 0, 1)) < 0.6:
        axis = torch.randn(3, generator=generator, dtype=torch.float64)
        rotation = _rotation_3d(axis, float(_uniform(generator, -math.pi, math.pi)))
        x = resample_affine(x, torch.cat([rotation, torch.zeros(3, 1, dtype=torch.float64)], 1).float())
    if float(_uniform(generator, 0, 1)) < 0.8:
        side = float(_uniform(generator, 0.6, 1.0))
        centre = _uniform(generator, -(1 - side), 1 - side, (3,))
        matrix = torch.cat([side * torch.eye(3, dtype=torch.float64), centre[:, None]], 1)
        x = resample_affine(x, matrix.float())
    return x


def intensity_augmentation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """SPEC §6 step 2: window shift ``clamp(x − τ, 0, 1 − τ′ − τ)``, then ``α·x + β`` (α ~ N(1, 0.1²),
    β ~ N(0, 0.1²)); drawn per sample (the reference draws per batch, with batches of one)."""
    tau, tau_prime = (float(v) for v in _uniform(generator, 0, 0.2, (2,)))
    x = torch.clamp(x - tau, 0.0, 1.0 - tau_prime - tau)
    alpha, beta = (float(v) for v in torch.randn(2, generator=generator, dtype=torch.float64) * 0.1)
    return (1.0 + alpha) * x + beta
