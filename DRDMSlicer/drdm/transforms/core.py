"""Deform channel-first tensors in nibabel axis order (the layout of MONAI and TorchIO) with DRDM, and undo it.

A deformation is computed once (:func:`deformation_field`), applied with :func:`apply_field` and undone with the
numerical inverse of the same field (:func:`inverse_field`): ``apply_field(apply_field(x, u), inverse_field(u))``
≈ ``x`` wherever ``x + u(x)`` stayed inside the grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import DRDMError
from ..models import DRDMModel
from ..physical.deform import compute_field
from ..physical.steering import Regions, plan_regions
from ..registration.inverse import invert_displacement
from ..settings import DEFAULTS, DeformationSettings, check_level
from ..spatial import warp, warp_labels


def _reverse_spatial(tensor: torch.Tensor, leading: int) -> torch.Tensor:
    dims = list(range(tensor.dim()))
    return tensor.permute(dims[:leading] + dims[leading:][::-1])


def _regions(labels: torch.Tensor | None, spacing: Sequence[float], keep: Sequence[int], only: Sequence[int],
             margin: float) -> Regions | None:
    """:func:`drdm.physical.steering.plan_regions` for a ``(C, *spatial)`` nibabel-order label map (channel 0 holds
    the label values) and its (x, y[, z]) spacing in mm."""
    if not keep and not only:
        return None
    array = None
    if labels is not None:
        values = labels[0].round() if labels.is_floating_point() else labels[0]
        array = _reverse_spatial(values, 0).to(torch.int64).cpu().numpy()  # -> (z, y, x)
    return plan_regions(array, tuple(float(s) for s in spacing)[::-1], keep=tuple(keep), only=tuple(only),
                        margin=float(margin))


def deformation_field(model: DRDMModel, reference: torch.Tensor, spacing: Sequence[float],
                      settings: DeformationSettings, *, generator: torch.Generator,
                      region_labels: torch.Tensor | None = None) -> torch.Tensor:
    """The DRDM deformation of ``reference`` (:func:`drdm.physical.deform.compute_field` in nibabel order).

    Args:
        reference: ``(1, *spatial)`` intensity tensor in nibabel order (x, y[, z]); the field is computed on it.
        spacing: mm per voxel in the same (x, y[, z]) order.
        settings: level, mode, speed, ``magnitude`` (the mean |u| in mm to reach over where ``keep``/``only`` allow
            motion; None: the model's own), ``keep``, ``only``, ``margin`` (:func:`drdm.physical.steering.plan_regions`;
            size and regions need mode ``"diffeomorphic"``); the draw comes from ``generator``.
        region_labels: ``(C, *spatial)`` label map whose channel 0 holds the label values that ``settings.keep``
            (structures not deformed) and ``settings.only`` (the structures that alone deform, with ``margin`` mm
            around them) name.

    Returns:
        ``(ndim, *spatial)`` float32 pull field in voxels on ``reference``'s device, channel i along axis i of the
        nibabel-order tensors.
    """
    if reference.dim() < 3 or reference.shape[0] != 1:
        raise ValueError(f"reference must be (1, *spatial), got {tuple(reference.shape)}")
    array = _reverse_spatial(reference[0], 0).to(torch.float64)  # -> (z, y, x)
    regions = _regions(region_labels, spacing, settings.keep, settings.only, settings.margin)
    ddf_zyx, _, _ = compute_field(model, array, tuple(spacing)[::-1], settings, generator=generator, regions=regions)
    ddf = _reverse_spatial(ddf_zyx.flip(1), 2)  # channels and axes back to nibabel order: (1, ndim, *spatial)
    return ddf[0].to(device=reference.device, dtype=torch.float32)


def apply_field(ddf: torch.Tensor, images: Sequence[torch.Tensor] = (), labels: Sequence[torch.Tensor] = (),
                label_method: str = DEFAULTS.label_method) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Warp ``images`` (linear, zero outside) and ``labels`` (``label_method``, integer values kept) with ``ddf``.

    ``ddf``: ``(ndim, *spatial)`` pull field in voxels (channel i along tensor axis i); ``images`` and ``labels``:
    ``(C, *spatial)`` tensors on the same grid (any device: the field follows them). Returns the warped tensors with
    their input dtypes.
    """
    out_images = []
    for image in images:
        _check_grid(ddf, image)
        field = ddf.to(image.device)[None]
        moved = warp(image.unsqueeze(0).to(field.dtype).transpose(0, 1), field.expand(image.shape[0], *field.shape[1:]))
        out_images.append(moved.transpose(0, 1)[0].to(image.dtype))
    out_labels = []
    for label in labels:
        _check_grid(ddf, label)
        field = ddf.to(label.device)[None]
        integer = label if not label.is_floating_point() else label.round().long()
        moved = warp_labels(integer.unsqueeze(1), field.expand(label.shape[0], *field.shape[1:]), label_method)[:, 0]
        out_labels.append(moved.to(label.dtype))
    return out_images, out_labels


def _check_grid(ddf: torch.Tensor, tensor: torch.Tensor) -> None:
    if tuple(tensor.shape[1:]) != tuple(ddf.shape[1:]):
        raise DRDMError(f"an image of spatial shape {tuple(tensor.shape[1:])} does not match the deformation's grid "
                        f"{tuple(ddf.shape[1:])}")


# label maps come back through the one-hot warp (each label's indicator linearly, then arg-max): a nearest-neighbour
# warp back after a nearest-neighbour warp forth shifts boundaries twice (Dice per label on a 64² cardiac phantom
# with cmr-2d, 3 seeds: 0.925-0.98 nearest, 0.943-0.99 one-hot)
INVERSE_LABEL_METHOD = "onehot"


def inverse_field(ddf: torch.Tensor) -> torch.Tensor:
    """The inverse of a ``(ndim, *spatial)`` pull field (voxels, channel i along tensor axis i), same shape, float32:
    warping by ``ddf`` and then by the inverse gives the input back (:func:`drdm.registration.inverse.invert_displacement`,
    defined where the field does not fold)."""
    return invert_displacement(ddf[None].to(torch.float64))[0].to(torch.float32)


def deform_channels_first(model: DRDMModel, reference: torch.Tensor, spacing: Sequence[float],
                          settings: DeformationSettings, *, generator: torch.Generator,
                          images: Sequence[torch.Tensor] = (),
                          labels: Sequence[torch.Tensor] = ()) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """One DRDM deformation computed on ``reference`` and applied to ``images`` and ``labels``.

    Args:
        reference: ``(1, *spatial)`` intensity tensor in nibabel order (x, y[, z]); the field is computed on it.
        spacing: mm per voxel in the same (x, y[, z]) order.
        images: ``(C, *spatial)`` tensors warped linearly (zero outside).
        labels: ``(C, *spatial)`` label maps warped with ``label_method``; integer values are kept. The first one
            (channel 0) holds the label values that ``settings.keep`` and ``settings.only`` name.
        settings: as :func:`deformation_field` takes them; ``settings.label_method`` warps the labels.

    Returns:
        ``(warped images, warped labels, ddf)`` with ``ddf`` ``(ndim, *spatial)`` float32 in voxels, channel i along
        axis i of the nibabel-order tensors (pull field).
    """
    ddf = deformation_field(model, reference, spacing, settings, generator=generator,
                            region_labels=labels[0] if labels else None)
    out_images, out_labels = apply_field(ddf, images, labels, settings.label_method)
    return out_images, out_labels, ddf


def as_models(model: DRDMModel | Sequence[DRDMModel]) -> tuple[DRDMModel, ...]:
    """One model or several (a random transform draws one per call) as a non-empty tuple."""
    models = (model,) if isinstance(model, DRDMModel) else tuple(model)
    if not models or not all(isinstance(m, DRDMModel) for m in models):
        raise ValueError("model must be a DRDMModel or a non-empty sequence of them")
    return models


def start_levels(levels: Sequence[int] | None, models: Sequence[DRDMModel]) -> tuple[int, ...]:
    """A random transform's start levels to draw from: ``levels``, or (None) the first model's first level."""
    chosen = tuple(int(level) for level in levels) if levels else (models[0].forward_process().first_level,)
    for level in chosen:
        for model in models:
            check_level(level, model.num_steps)
    return chosen


def size_range(magnitudes: float | Sequence[float] | None) -> tuple[float, float] | None:
    """A random transform's sizes to draw from (mm): ``(low, high)``, one number (always that size) or None."""
    if magnitudes is None:
        return None
    values = (float(magnitudes),) * 2 if isinstance(magnitudes, (int, float)) else tuple(float(m) for m in magnitudes)
    if len(values) != 2 or not 0 < values[0] <= values[1] or values[1] == float("inf"):
        raise ValueError(f"magnitudes must be a size in mm or a range (low, high) with 0 < low <= high, got {magnitudes}")
    return values


def model_identity(model: DRDMModel) -> dict[str, str]:
    """What a record keeps of the model: its name and the sha256 of its weights file ('' if made in memory)."""
    return {"model": model.name, "model_sha256": model.sha256}


def check_model(record: dict, model: DRDMModel) -> None:
    """Refuse to replay a record with another model than the one that made it (same name and sha256)."""
    if (record.get("model"), record.get("model_sha256")) != (model.name, model.sha256):
        raise DRDMError(f"the record was made with model {record.get('model')!r} (sha256 {record.get('model_sha256') or '-'}), "
                        f"not {model.name!r} (sha256 {model.sha256 or '-'}): pass the model that made it")


def not_invertible(name: str) -> DRDMError:
    """The one-line error of an inverse asked of a reference-mode deformation."""
    return DRDMError(f"{name} in mode 'reference' is not invertible (the authors' sampler folds, so its field has no "
                     "inverse): use mode='diffeomorphic'")
