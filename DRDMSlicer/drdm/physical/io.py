"""Reading and writing images, label maps and displacement-field transforms (SimpleITK, LPS, mm).

Every read is validated (one clear :class:`InputError` per problem); every write is atomic (a temporary
file in the target folder, then a rename), and inputs are never written to.
"""

from __future__ import annotations

import contextlib
import gzip
import locale
import os
import shutil
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import DRDMError

SLAB_VOXELS = 1 << 21  # voxels per slab when full-resolution fields are converted piecewise
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
INTEGER_PIXEL_IDS = {
    sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32, sitk.sitkInt32,
    sitk.sitkUInt64, sitk.sitkInt64,
}

NIFTI_CHECK_BYTES = 1 << 24  # bytes of a NIfTI data block checked for NaN/Inf at a time


class InputError(DRDMError):
    """An input the user gave cannot be used; the message says why in one line."""


@contextlib.contextmanager
def itk_warnings_hidden() -> Iterator[None]:
    """Hide ITK's (harmless) header warnings on stderr inside the block; the previous setting comes back after.

    The setting is process-wide in ITK, so it is changed only around our own reads, never for the whole process
    (Slicer's own readers keep their warnings).
    """
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)


def file_suffix(path: Path) -> str:
    """The lower-case file extension, ``.nii.gz`` counted as one."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def read_image(path: str | Path, what: str = "image") -> sitk.Image:
    """Read a 2D/3D scalar image (NIfTI, NRRD, MHA, ... or a DICOM series folder) and validate it."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} {path}: no such file or folder")
    try:
        with itk_warnings_hidden():
            image = _read_file_or_series(path, what)
    except RuntimeError as error:
        detail = next((line.strip() for line in str(error).splitlines() if line.strip().startswith("ITK")), "")
        suffix = f": {detail}" if detail else ""
        raise InputError(f"{what} {path}: cannot be read (corrupt, truncated or unsupported format){suffix}") from None
    validate_image(image, f"{what} {path}")
    _check_nifti_finite(path, f"{what} {path}")
    return image


@contextlib.contextmanager
def locale_kept() -> Iterator[None]:
    """Restore the process's C locale after ITK's DICOM (GDCM) code, which can leave it at ``"C"``: afterwards
    Python would decode text (a subprocess's output, a file opened without an encoding) as ASCII."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _read_file_or_series(path: Path, what: str) -> sitk.Image:
    if path.is_dir():
        with locale_kept():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if not series:
                raise InputError(f"{what} {path}: folder holds no DICOM series")
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
            return reader.Execute()
    _check_complete(path, what)
    with locale_kept():  # a single DICOM file goes through GDCM too
        return sitk.ReadImage(str(path))


def _check_complete(path: Path, what: str) -> None:
    """ITK zero-fills truncated gzip files silently; read the gzip stream to its end marker first."""
    if not path.name.lower().endswith(".gz"):
        return
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 22):
                pass
    except (EOFError, OSError, zlib.error) as error:
        raise InputError(f"{what} {path}: cannot be read (corrupt or truncated gzip data: {error})") from None


def _check_nifti_finite(path: Path, label: str) -> None:
    """ITK's NIfTI reader turns NaN and infinite voxels into 0 without a word: check the file's raw data block.

    nibabel parses the header (data type and byte order, data offset, shape); the data block is then streamed in
    pieces of :data:`NIFTI_CHECK_BYTES`, so the check needs little memory. Integer NIfTI files hold no NaN.
    """
    if path.is_dir() or file_suffix(path) not in (".nii", ".nii.gz"):
        return
    import nibabel  # imported here: only NIfTI files need it

    try:
        data = nibabel.load(str(path)).dataobj  # an array proxy: the header is read, the data is not
        dtype, offset, count = np.dtype(data.dtype), int(data.offset), int(np.prod(data.shape))
    except (OSError, ValueError, nibabel.filebasedimages.ImageFileError):
        return  # ITK read it; a header nibabel cannot parse is left to ITK's validation
    if dtype.kind not in "fc":
        return
    opener = gzip.open if file_suffix(path) == ".nii.gz" else open
    step = max(1, NIFTI_CHECK_BYTES // dtype.itemsize)
    with opener(path, "rb") as stream:
        stream.seek(offset)
        for start in range(0, count, step):
            block = np.frombuffer(stream.read(min(step, count - start) * dtype.itemsize), dtype=dtype)
            if not np.isfinite(block).all():
                raise InputError(f"{label}: contains NaN or infinite voxels")


def validate_image(image: sitk.Image, label: str) -> None:
    """Raise :class:`InputError` for 4D, multi-component, empty or non-finite images."""
    if image.GetDimension() not in (2, 3):
        raise InputError(f"{label}: {image.GetDimension()}D images are not supported (2D or 3D only)")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{label}: has {image.GetNumberOfComponentsPerPixel()} components per voxel (RGB/vector); "
                         "a scalar image is needed")
    if 0 in image.GetSize() or image.GetNumberOfPixels() == 0:
        raise InputError(f"{label}: is empty (size {image.GetSize()})")
    if image.GetDimension() == 3 and sum(s > 1 for s in image.GetSize()) < 2:
        raise InputError(f"{label}: has fewer than two axes longer than one voxel (size {image.GetSize()})")
    array = sitk.GetArrayViewFromImage(image)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InputError(f"{label}: contains NaN or infinite voxels")


def read_labels(path: str | Path, reference: sitk.Image) -> sitk.Image:
    """Read an integer label map that lies on ``reference``'s grid."""
    labels = read_image(path, "labels")
    if labels.GetPixelID() not in INTEGER_PIXEL_IDS:
        array = sitk.GetArrayViewFromImage(labels)
        if not np.array_equal(array, np.round(array)):
            raise InputError(f"labels {path}: voxel values are not integers ({labels.GetPixelIDTypeAsString()})")
        labels = sitk.Cast(labels, sitk.sitkInt32)
    mismatch = geometry_mismatch(labels, reference)
    if mismatch:
        raise InputError(f"labels {path}: geometry differs from the image ({mismatch})")
    return labels


def geometry_mismatch(a: sitk.Image, b: sitk.Image) -> str:
    """Describe how two images' grids differ ('' when they agree to 1e-4 relative / 1e-6 direction)."""
    if a.GetDimension() != b.GetDimension():
        return f"{a.GetDimension()}D vs {b.GetDimension()}D"
    if a.GetSize() != b.GetSize():
        return f"size {a.GetSize()} vs {b.GetSize()}"
    if not np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-4, atol=1e-6):
        return f"spacing {a.GetSpacing()} vs {b.GetSpacing()}"
    scale = max(max(a.GetSpacing()), 1e-3)
    if not np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=1e-3 * scale):
        return f"origin {a.GetOrigin()} vs {b.GetOrigin()}"
    if not np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-5):
        return "direction cosines differ"
    return ""


def spacing_array_order(image: sitk.Image) -> tuple[float, ...]:
    """Spacing in array (z, y, x) order."""
    return tuple(float(s) for s in image.GetSpacing()[::-1])


def image_array(image: sitk.Image) -> torch.Tensor:
    """The image as a float64 tensor in array order."""
    return torch.from_numpy(sitk.GetArrayFromImage(image).astype(np.float64))


# -- displacement fields --------------------------------------------------------------------------


def displacement_image(ddf: torch.Tensor, reference: sitk.Image) -> sitk.Image:
    """Voxel field on ``reference``'s grid -> ITK displacement image (float64 vectors, LPS millimetres).

    ``ddf``: ``(1, ndim, *shape)`` or ``(ndim, *shape)``, channel i along array axis i, in voxels (pull).
    The vector at each voxel is ``Direction · (spacing ⊙ u_ijk)`` with ``u_ijk`` the channels in
    (i, j, k) = reversed array order, as ITK's DisplacementFieldTransform expects.
    """
    field = ddf[0] if ddf.dim() == reference.GetDimension() + 2 else ddf
    ndim = reference.GetDimension()
    direction = np.array(reference.GetDirection(), dtype=np.float64).reshape(ndim, ndim)
    matrix = direction * np.array(reference.GetSpacing(), dtype=np.float64)[None, :]
    vectors = np.empty(tuple(field.shape[1:]) + (ndim,), dtype=np.float64)
    step = max(1, SLAB_VOXELS // max(1, int(np.prod(field.shape[2:]))))
    for start in range(0, field.shape[1], step):  # slabs along the first array axis: bounded temporaries
        u_ijk = field[:, start:start + step].flip(0).to(torch.float64).cpu().numpy()  # channel = i, j, k
        vectors[start:start + step] = np.moveaxis(np.tensordot(matrix, u_ijk, axes=([1], [0])), 0, -1)
    image = sitk.GetImageFromArray(vectors, isVector=True)
    image.CopyInformation(reference)
    return image


def displacement_voxels(field_image: sitk.Image, reference: sitk.Image | None = None) -> torch.Tensor:
    """Inverse of :func:`displacement_image`: an ITK displacement image -> ``(1, ndim, *shape)`` voxels,
    channel i along array axis i of the field image's grid (resampled onto ``reference`` if given)."""
    if reference is not None and geometry_mismatch(field_image, reference):
        resampler = sitk.ResampleImageFilter()
        resampler.SetReferenceImage(reference)
        resampler.SetInterpolator(sitk.sitkLinear)
        field_image = resampler.Execute(sitk.Cast(field_image, sitk.sitkVectorFloat64))
    ndim = field_image.GetDimension()
    vectors = np.moveaxis(sitk.GetArrayFromImage(field_image).astype(np.float64), -1, 0)
    direction = np.array(field_image.GetDirection(), dtype=np.float64).reshape(ndim, ndim)
    matrix = direction * np.array(field_image.GetSpacing(), dtype=np.float64)[None, :]
    u_ijk = np.tensordot(np.linalg.inv(matrix), vectors, axes=([1], [0]))
    return torch.from_numpy(u_ijk[::-1].copy()).unsqueeze(0)


def displacement_transform(field_image: sitk.Image) -> sitk.DisplacementFieldTransform:
    """An ITK displacement-field transform (the field image is copied, not consumed)."""
    copy = sitk.Image(field_image)
    return sitk.DisplacementFieldTransform(sitk.Cast(copy, sitk.sitkVectorFloat64))


def read_displacement_transform(path: str | Path) -> sitk.Image:
    """Read a displacement field from an ITK transform file (.h5/.tfm) or a vector image; returns the field image."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"transform {path}: no such file")
    if file_suffix(path) in TRANSFORM_SUFFIXES:
        transform = _unwrap(read_transform_file(path, "transform"))
        if transform.GetTransformEnum() != sitk.sitkDisplacementField:
            raise InputError(f"transform {path}: is a {transform.GetName()}, not a displacement-field transform")
        return sitk.DisplacementFieldTransform(transform).GetDisplacementField()
    image = read_vector_image(path)
    return image


TRANSFORM_SUFFIXES = (".h5", ".hdf5", ".tfm", ".txt")  # ITK transform files


def read_transform_file(path: Path, what: str) -> sitk.Transform:
    """Any ITK transform file (composites included), or an :class:`InputError` naming ``what``."""
    try:
        with itk_warnings_hidden():
            return sitk.ReadTransform(str(path))
    except RuntimeError:
        raise InputError(f"{what} {path}: cannot be read as an ITK transform") from None


def _unwrap(transform: sitk.Transform) -> sitk.Transform:
    """The single transform inside a composite (ITK writes composites to .h5)."""
    if transform.GetTransformEnum() == sitk.sitkComposite:
        composite = sitk.CompositeTransform(transform)
        if composite.GetNumberOfTransforms() == 1:
            return composite.GetNthTransform(0)
    return transform


def read_vector_image(path: Path) -> sitk.Image:
    """A displacement-field image (one vector per voxel); ANTs' 5D NIfTI layout (x, y, z, 1, 3) read without the
    vector intent, and (x, y, z, 3), become a 3D vector image."""
    try:
        with itk_warnings_hidden():
            image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise InputError(f"field {path}: cannot be read") from None
    if image.GetDimension() > 3 and image.GetNumberOfComponentsPerPixel() == 1:
        image = _vector_from_trailing_axis(image, path)
    if image.GetNumberOfComponentsPerPixel() != image.GetDimension():
        raise InputError(f"field {path}: needs {image.GetDimension()} components per voxel, "
                         f"has {image.GetNumberOfComponentsPerPixel()}")
    return image


def _vector_from_trailing_axis(image: sitk.Image, path: Path) -> sitk.Image:
    """(x, y, z, 1, 3) or (x, y, z, 3) scalar image (a NIfTI field without the vector intent) -> 3D vector image."""
    size = image.GetSize()
    spatial = list(size[:-1])
    while len(spatial) > 2 and spatial[-1] == 1:
        spatial.pop()
    ndim = len(spatial)
    if size[-1] != ndim or any(n != 1 for n in size[ndim:-1]):
        raise InputError(f"field {path}: size {size} is not a displacement field (x, y, z, 1, 3)")
    array = sitk.GetArrayFromImage(image).reshape((ndim,) + tuple(spatial[::-1]))
    vectors = sitk.GetImageFromArray(np.moveaxis(array, 0, -1).astype(np.float64), isVector=True)
    full = image.GetDimension()
    vectors.SetSpacing(image.GetSpacing()[:ndim])
    vectors.SetOrigin(image.GetOrigin()[:ndim])
    vectors.SetDirection(np.array(image.GetDirection()).reshape(full, full)[:ndim, :ndim].flatten().tolist())
    return vectors


# -- atomic writes --------------------------------------------------------------------------------


def _unused_sibling(path: Path, suffix: str = "") -> Path:
    """A fresh name beside ``path`` (nothing is created: the caller creates it inside its own ``try``)."""
    return path.with_name(f".{path.name}.partial-{uuid.uuid4().hex}{suffix}")


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary)`` for a temporary file beside ``path`` (same extension), then rename it to ``path``.

    The temporary file is created inside the ``try``, so an error or Ctrl-C at any point leaves nothing behind
    and ``path`` either untouched or complete.
    """
    path = Path(path)
    temporary = _unused_sibling(path, file_suffix(path))
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_image(image: sitk.Image, path: str | Path, compress: bool = True) -> Path:
    """Write an image atomically (format from the extension)."""
    return write_atomically(path, lambda temporary: sitk.WriteImage(image, str(temporary), compress))


def write_transform(transform: sitk.Transform, path: str | Path) -> Path:
    """Write an ITK transform atomically (``.h5`` HDF5 or ``.tfm``/``.txt`` text)."""
    return write_atomically(path, lambda temporary: sitk.WriteTransform(transform, str(temporary)))


def write_text(text: str, path: str | Path) -> Path:
    """Write a UTF-8 text file atomically."""
    return write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def staged_directory(final: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name and rename it to ``final`` only if the block succeeds.

    On any exception (including Ctrl-C) the partial folder is removed and ``final`` is left untouched.
    Refuses to replace an existing ``final``.
    """
    final = Path(final)
    if final.exists():
        raise InputError(f"output {final} already exists; choose another `out` folder or remove it")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = _unused_sibling(final)  # a random name: no other run can own it
    try:
        staging.mkdir()  # inside the try: a Ctrl-C right after it still removes the folder
        yield staging
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and make sure files can be written there."""
    folder = Path(folder)
    probe = folder / f".drdm-write-test-{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            probe.open("xb").close()
        finally:
            probe.unlink(missing_ok=True)
    except OSError as error:
        raise InputError(f"output folder {folder} is not writable ({error.strerror or error})") from None
    return folder
