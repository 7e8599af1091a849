"""Deform channel-first tensors in nibabel axis order (the layout of MONAI and TorchIO) with DRDM."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import DRDMError
from ..models import DRDMModel
from ..physical.deform import compute_field
from ..settings import DEFAULTS
from ..spatial import warp, warp_labels


def _reverse_spatial(tensor: torch.Tensor, leading: int) -> torch.Tensor:
    dims = list(range(tensor.dim()))
    return tensor.permute(dims[:leading] + dims[leading:][::-1])


def deform_channels_first(model: DRDMModel, reference: torch.Tensor, spacing: Sequence[float], *, level: int,
                          generator: torch.Generator, images: Sequence[torch.Tensor] = (),
                          labels: Sequence[torch.Tensor] = (), mode: str = DEFAULTS.mode, speed: str = DEFAULTS.speed,
                          label_method: str = "nearest") -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """One DRDM deformation computed on ``reference`` and applied to ``images`` and ``labels``.

    Args:
        reference: ``(1, *spatial)`` intensity tensor in nibabel order (x, y[, z]); the field is computed on it.
        spacing: mm per voxel in the same (x, y[, z]) order.
        images: ``(C, *spatial)`` tensors warped linearly (zero outside).
        labels: ``(C, *spatial)`` label maps warped with ``label_method``; integer values are kept.

    Returns:
        ``(warped images, warped labels, ddf)`` with ``ddf`` ``(ndim, *spatial)`` in voxels, channel i along
        axis i of the nibabel-order tensors (pull field).
    """
    if reference.dim() < 3 or reference.shape[0] != 1:
        raise ValueError(f"reference must be (1, *spatial), got {tuple(reference.shape)}")
    array = _reverse_spatial(reference[0], 0).to(torch.float64)  # -> (z, y, x)
    ddf_zyx, _, _ = compute_field(model, array, tuple(spacing)[::-1], level=level, generator=generator, mode=mode,
                                  speed=speed)
    ddf = _reverse_spatial(ddf_zyx.flip(1), 2)  # channels and axes back to nibabel order: (1, ndim, *spatial)
    ddf = ddf.to(reference.device)
    out_images = []
    for image in images:
        moved = warp(image.unsqueeze(0).to(ddf.dtype).transpose(0, 1), ddf.expand(image.shape[0], *ddf.shape[1:]))
        out_images.append(moved.transpose(0, 1)[0].to(image.dtype))
    out_labels = []
    for label in labels:
        integer = label if not label.is_floating_point() else label.round().long()
        moved = warp_labels(integer.unsqueeze(1), ddf.expand(label.shape[0], *ddf.shape[1:]), label_method)[:, 0]
        out_labels.append(moved.to(label.dtype))
    return out_images, out_labels, ddf[0]


def as_models(model: DRDMModel | Sequence[DRDMModel]) -> tuple[DRDMModel, ...]:
    """One model or several (a random transform draws one per call) as a non-empty tuple."""
    models = (model,) if isinstance(model, DRDMModel) else tuple(model)
    if not models or not all(isinstance(m, DRDMModel) for m in models):
        raise ValueError("model must be a DRDMModel or a non-empty sequence of them")
    return models


def model_identity(model: DRDMModel) -> dict[str, str]:
    """What a record keeps of the model: its name and the sha256 of its weights file ('' if made in memory)."""
    return {"model": model.name, "model_sha256": model.sha256}


def check_model(record: dict, model: DRDMModel) -> None:
    """Refuse to replay a record with another model than the one that made it (same name and sha256)."""
    if (record.get("model"), record.get("model_sha256")) != (model.name, model.sha256):
        raise DRDMError(f"the record was made with model {record.get('model')!r} (sha256 {record.get('model_sha256') or '-'}), "
                        f"not {model.name!r} (sha256 {model.sha256 or '-'}): pass the model that made it")
