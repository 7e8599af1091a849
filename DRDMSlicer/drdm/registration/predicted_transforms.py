"""Predicted transforms of registration tools: any ITK transform file or displacement-field image, as a field on
the fixed grid.

Direction: a predicted transform maps fixed-grid points to moving-image points, the way
``SimpleITK.Resample(moving, fixed, transform)`` uses it (ITK, ANTs and elastix registrations of *moving* onto
*fixed* write this "backward" transform). Accepted files:

- ITK transform files (``.h5``, ``.hdf5``, ``.tfm``, ``.txt``): any transform ITK reads, composites included
  (affine + B-spline + displacement field, ...); it is sampled on the fixed grid.
- displacement-field images (``.nii.gz``, ``.nii``, ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``): one vector of LPS
  millimetres per voxel (ITK's convention, which ANTs follows), including ANTs' 5D NIfTI layout (x, y, z, 1, 3).

Time convention: a tool's run time in seconds, one number, in ``<prediction>.time.txt`` (e.g.
``predicted.h5.time.txt``) or, failing that, ``time.txt`` in the prediction's folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..physical.io import TRANSFORM_SUFFIXES, InputError, file_suffix, read_transform_file, read_vector_image

FIELD_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def read_predicted_transform(path: str | Path, ndim: int) -> sitk.Transform:
    """Read a predicted transform (see the module's list of formats) for an ``ndim``-D fixed image."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"predicted transform {path}: no such file")
    suffix = file_suffix(path)
    if suffix in TRANSFORM_SUFFIXES:
        transform = read_transform_file(path, "predicted transform")
    elif suffix in FIELD_SUFFIXES:
        transform = sitk.DisplacementFieldTransform(sitk.Cast(read_field_image(path), sitk.sitkVectorFloat64))
    else:
        raise InputError(f"predicted transform {path}: unknown format (use .h5, .tfm or a displacement-field image: "
                         ".nii.gz, .nrrd, .mha)")
    if transform.GetDimension() != ndim:
        raise InputError(f"predicted transform {path}: is {transform.GetDimension()}D, the fixed image is {ndim}D")
    return transform


def read_field_image(path: Path) -> sitk.Image:
    """A displacement-field image as an ITK vector image (ANTs' 5D layout included), checked for NaN."""
    image = read_vector_image(path)
    if not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
        raise InputError(f"field {path}: contains NaN or infinite values")
    return image


def field_on_grid(transform: sitk.Transform, reference: sitk.Image) -> sitk.Image:
    """``transform(x) - x`` at every voxel centre ``x`` of ``reference``: a float64 vector image, LPS mm."""
    return sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, reference.GetSize(),
                                             reference.GetOrigin(), reference.GetSpacing(), reference.GetDirection())


def read_time(path: str | Path) -> float | None:
    """The run time a tool recorded beside its prediction (seconds), or None (see the module's convention)."""
    path = Path(path)
    for candidate in (path.with_name(path.name + ".time.txt"), path.with_name("time.txt")):
        if candidate.is_file():
            text = candidate.read_text(encoding="utf-8").strip()
            try:
                return float(text.split()[0])
            except (ValueError, IndexError):
                raise InputError(f"time file {candidate}: holds {text[:40]!r}, not a number of seconds") from None
    return None
