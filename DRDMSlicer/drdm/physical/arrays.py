"""Numpy arrays in, numpy arrays out: DRDM deformations of an array with its spacing, ``count`` samples at once.

:func:`deform_array` wraps the array in a SimpleITK image (origin 0, identity direction, the given spacing), runs the
very path of :func:`drdm.physical.deform.deform_images` and hands the results back as stacked arrays, so a sample is
the same bytes as :func:`drdm.deform_image` gives on that image with the same seed, count and options.

The rule for ``count`` (what is bit for bit the same as what):

* ``count=1``: one sampler run, identical to ``drdm.deform_image(image, seed=seed)`` (today's single sample).
* ``count=N`` (``batch=None`` or True): seeds ``seed, seed+1, …, seed+N-1`` run as sampler batches (as many samples
  per batch as the memory estimate allows: all N for 2D slices); identical to ``drdm.deform_image(image, seed=seed,
  count=N)``. Sample ``k`` is close to, not the bytes of, the lone run with seed ``seed+k``: the float32 rounding of
  batched convolutions, carried through the iterative sampler, moves a cmr-2d sample by up to about 1 voxel
  (``benchmarks/batched_samples.py``).
* ``count=N, batch=False``: one sampler run per sample; sample ``k`` is identical to the lone run with seed ``seed+k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..models import DRDMModel
from ..settings import DeformationSettings
from .deform import DeformationResult, deform_images
from .io import InputError, validate_image

SUPPORTED_KINDS = "iuf"  # signed / unsigned integers and floats


@dataclass
class ArrayDeformations:
    """``count`` deformations of one array, stacked along a leading axis (all in the input's array order).

    Attributes:
        images: ``(count, *shape)`` deformed images, the input's dtype (float16 comes back as float32).
        labels: ``(count, *shape)`` deformed label maps, the labels' dtype and values, or None without labels.
        displacement: ``(count, ndim, *shape)`` float64, millimetres, channel i along array axis i; a pull field:
            ``images[k](p) = array(p + displacement[k](p))`` (interpolated linearly by default).
        jacobian: ``(count, *shape)`` float32 det J of each deformation.
        statistics: one dict per sample (mean / p95 |u| in mm, folding fraction, det J range, seed, level, model,
            seconds, and what steering asked and reached), as ``DeformationResult.statistics``.
        seeds: the seed of each sample (``seed + k``).
    """

    images: np.ndarray
    labels: np.ndarray | None
    displacement: np.ndarray
    jacobian: np.ndarray
    statistics: list[dict]
    seeds: list[int]


def _numeric(values: object, what: str) -> np.ndarray:
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as error:
        raise InputError(f"{what}: not an array of numbers ({error})") from None
    if array.dtype.kind == "b" and what == "labels":
        array = array.astype(np.uint8)
    if array.dtype.kind not in SUPPORTED_KINDS:
        raise InputError(f"{what}: dtype {array.dtype} is not supported: give real numbers (integers or floats)")
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    return np.ascontiguousarray(array)


def _spacing(spacing: object, array: np.ndarray) -> tuple[float, ...]:
    try:
        values = tuple(float(s) for s in np.asarray(spacing, dtype=np.float64).reshape(-1))
    except (TypeError, ValueError):
        raise InputError(f"spacing {spacing!r}: not a sequence of numbers (mm per voxel, one per array axis)") from None
    shape = array.shape
    if array.ndim == len(values) + 1 and len(values) in (2, 3) and shape[-1] in (3, 4):
        raise InputError(f"array of shape {shape} has {shape[-1]} components per voxel (RGB/vector) for a "
                         f"{len(values)}D spacing: a scalar image is needed (one value per voxel)")
    if array.ndim not in (2, 3):
        raise InputError(f"array of shape {shape} is {array.ndim}D: 2D (y, x) or 3D (z, y, x) arrays only")
    if len(values) != array.ndim:
        raise InputError(f"spacing {values} has {len(values)} values for a {array.ndim}D array: give one per array "
                         "axis, in array order (mm)")
    if not all(np.isfinite(s) and s > 0 for s in values):
        raise InputError(f"spacing {values}: every value must be a positive number of mm")
    return values


def image_from_array(array: object, spacing: Sequence[float], labels: object | None = None
                     ) -> tuple[sitk.Image, sitk.Image | None]:
    """``(image, labels)`` as SimpleITK images (origin 0, identity direction, ``spacing`` reversed into ITK order).

    Args:
        array: ``(y, x)`` or ``(z, y, x)`` scalar intensities, any integer or float dtype, finite.
        spacing: mm per voxel in array order (``(sy, sx)`` or ``(sz, sy, sx)``).
        labels: an integer label map of ``array``'s shape (integer-valued floats and booleans are accepted), or None.

    Raises :class:`drdm.physical.io.InputError` (a :class:`drdm.errors.DRDMError`) with one line for a bad input: not
    numbers, RGB, not 2D/3D, spacing of the wrong length or not positive, NaN/infinite values, labels of another
    shape or not integers.
    """
    values = _numeric(array, "array")
    spacing_zyx = _spacing(spacing, values)
    if values.size == 0:
        raise InputError(f"array is empty (shape {values.shape})")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise InputError("array contains NaN or infinite values")
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(spacing_zyx[::-1])
    validate_image(image, "array")
    if labels is None:
        return image, None
    label_values = _numeric(labels, "labels")
    if label_values.shape != values.shape:
        raise InputError(f"labels of shape {label_values.shape} do not match the array's shape {values.shape}")
    if label_values.dtype.kind == "f":
        if not np.isfinite(label_values).all() or not np.array_equal(label_values, np.round(label_values)):
            raise InputError("labels: values are not integers (a label map holds integer label values)")
        label_values = label_values.astype(np.int32)
    label_image = sitk.GetImageFromArray(label_values)
    label_image.CopyInformation(image)
    return image, label_image


def deform_samples(model: DRDMModel, image: sitk.Image, labels: sitk.Image | None = None, *,
                   settings: DeformationSettings, batch: bool | None = None, **run: object) -> list[DeformationResult]:
    """``settings.count`` deformations of ``image`` with seeds ``seed … seed+count-1`` (:func:`deform_images`);
    ``batch`` None: sampler batches when ``count > 1``; ``run``: ``slice_axis``, ``progress``, ``cancel``,
    ``cuda_graph``. The module docstring states what equals what, bit for bit."""
    return deform_images(model, image, labels, settings=settings,
                         batch=settings.count > 1 if batch is None else batch, **run)


def deform_array(model: DRDMModel, array: object, spacing: Sequence[float], labels: object | None = None, *,
                 settings: DeformationSettings, batch: bool | None = None, **run: object) -> ArrayDeformations:
    """``count`` DRDM deformations of a numpy array (and its label map), stacked (:class:`ArrayDeformations`).

    Args:
        model: a loaded model; array, spacing, labels: as :func:`image_from_array` takes them.
        settings: as :func:`drdm.physical.deform.deform_images` takes them: ``count`` samples, the first with
            ``seed`` (sample ``k`` uses ``seed + k``), at ``level``, ``mode``, ``speed``, ``magnitude``, …
        batch: None (default): one batched sampler call when ``count > 1`` (as many samples per batch as memory
            allows), False: one sampler run per sample (see the module docstring).
        run: ``slice_axis``, ``progress``, ``cancel``, ``cuda_graph``.

    Example::

        out = deform_array(model, slice_yx, (1.5625, 1.5625), labels_yx,
                           settings=DeformationSettings(level=48, seed=0, count=8, speed="faster"))
        out.images.shape == (8, *slice_yx.shape); out.displacement.shape == (8, 2, *slice_yx.shape)
    """
    image, label_image = image_from_array(array, spacing, labels)
    results = deform_samples(model, image, label_image, settings=settings, batch=batch, **run)
    return ArrayDeformations(
        images=np.stack([sitk.GetArrayFromImage(r.image) for r in results]),
        labels=None if label_image is None else np.stack([sitk.GetArrayFromImage(r.labels) for r in results]),
        # field vectors are (x, y[, z]) mm at each voxel; with the identity direction, component j is axis ndim-1-j
        displacement=np.stack([np.moveaxis(sitk.GetArrayFromImage(r.field), -1, 0)[::-1] for r in results]),
        jacobian=np.stack([sitk.GetArrayFromImage(r.jacobian) for r in results]),
        statistics=[r.statistics for r in results],
        seeds=[int(r.statistics["seed"]) for r in results],
    )
