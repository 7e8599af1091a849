"""What a displacement field does on an image's grid: its det J map and its statistics in mm, computed one way for a
generated sample (:mod:`drdm.physical.deform`), for ``drdm jacobian`` and for :func:`drdm.jacobian`."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk
import torch

from ..field_statistics import determinant_statistics, displacement_statistics
from ..spatial import jacobian_determinant_slabs
from .io import displacement_voxels, read_displacement_transform, spacing_array_order


def summarise_field(ddf: torch.Tensor, reference: sitk.Image) -> tuple[sitk.Image, dict]:
    """det J (float32 image on ``reference``'s grid) and the statistics of ``ddf`` ``(1, ndim, *shape)`` (voxels of
    ``reference``, channel i along array axis i): mean/p95/max |u| in voxels, mm and % of the field of view, folding
    fraction, det J range (:mod:`drdm.field_statistics`), one value each."""
    det = jacobian_determinant_slabs(ddf)
    stats = {key: values[0] for key, values in displacement_statistics(ddf, spacing_array_order(reference)).items()}
    stats.update({key: values[0] for key, values in determinant_statistics(det).items()})
    jacobian = sitk.GetImageFromArray(det[0].numpy())
    jacobian.CopyInformation(reference)
    return jacobian, stats


def transform_jacobian(transform: str | Path, reference: sitk.Image) -> tuple[sitk.Image, dict]:
    """:func:`summarise_field` of an ITK displacement-field transform file (``.h5``/``.tfm``, or a displacement
    vector image) resampled on ``reference``'s grid."""
    return summarise_field(displacement_voxels(read_displacement_transform(transform), reference), reference)
