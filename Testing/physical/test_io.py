"""drdm.physical.io: transform files round-trip, voxel <-> physical fields, truncated files, DICOM folders, atomicity."""

from __future__ import annotations

import gzip
import locale
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import interrupt_after
from drdm.physical import io


def oblique_image(size=(12, 10, 8), spacing=(0.7, 1.3, 2.1)) -> sitk.Image:
    image = sitk.GetImageFromArray(np.random.default_rng(0).random(size[::-1]).astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin((3.0, -4.0, 5.0))
    angle = np.deg2rad(30)
    image.SetDirection((np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1))
    return image


def test_voxel_field_round_trip_through_physical():
    image = oblique_image()
    ddf = torch.randn(1, 3, 8, 10, 12, dtype=torch.float64)
    back = io.displacement_voxels(io.displacement_image(ddf, image))
    assert torch.allclose(back, ddf, atol=1e-10)
    vectors = sitk.GetArrayFromImage(io.displacement_image(ddf, image))
    # 1 voxel along array axis 2 (ITK i) is spacing_x mm along the first direction column
    unit = torch.zeros(1, 3, 8, 10, 12)
    unit[:, 2] = 1.0
    vector = sitk.GetArrayFromImage(io.displacement_image(unit, image))[0, 0, 0]
    assert np.allclose(vector, 0.7 * np.array(image.GetDirection()).reshape(3, 3)[:, 0])
    assert vectors.shape == (8, 10, 12, 3)


@pytest.mark.parametrize("suffix", [".h5", ".tfm"])
def test_transform_files_round_trip(tmp_path, suffix):
    image = oblique_image()
    ddf = torch.randn(1, 3, 8, 10, 12, dtype=torch.float64)
    path = io.write_transform(io.displacement_transform(io.displacement_image(ddf, image)), tmp_path / f"t{suffix}")
    field = io.read_displacement_transform(path)
    assert torch.allclose(io.displacement_voxels(field, image), ddf, atol=1e-6)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary files left


def test_read_rejects_truncated_gzip(tmp_path):
    path = tmp_path / "x.nii.gz"
    sitk.WriteImage(oblique_image(), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(io.InputError, match="truncated"):
        io.read_image(path)
    with gzip.open(tmp_path / "ok.nii.gz", "wb") as handle:
        handle.write(gzip.decompress(data))
    assert io.read_image(tmp_path / "ok.nii.gz").GetSize() == (12, 10, 8)


def test_dicom_series_folder(tmp_path):
    image = sitk.Cast(oblique_image() * 1000, sitk.sitkInt16)
    folder = tmp_path / "dicom"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125." + str(int(time.time()))
    direction = image.GetDirection()
    with io.locale_kept():  # ITK's DICOM writer leaves the process's locale at "C" (later tests decode as ASCII)
        for k in range(image.GetDepth()):
            plane = image[:, :, k]
            plane.SetMetaData("0020|000e", series)
            plane.SetMetaData("0020|0037", "\\".join(str(v) for v in direction[0:3] + direction[3:6]))
            plane.SetMetaData("0020|0032", "\\".join(str(v) for v in image.TransformIndexToPhysicalPoint((0, 0, k))))
            plane.SetMetaData("0020|0013", str(k))
            plane.SetMetaData("0008|0060", "MR")
            writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
            writer.Execute(plane)
    before = locale.setlocale(locale.LC_ALL)
    read = io.read_image(folder)
    assert locale.setlocale(locale.LC_ALL) == before  # reading a series leaves the locale as it found it
    assert read.GetSize() == image.GetSize()
    assert np.allclose(read.GetSpacing(), image.GetSpacing(), atol=1e-3)
    assert np.array_equal(sitk.GetArrayFromImage(read), sitk.GetArrayFromImage(image))


def test_empty_folder_is_not_a_series(tmp_path):
    with pytest.raises(io.InputError, match="no DICOM series"):
        io.read_image(tmp_path)


def test_staged_directory_is_all_or_nothing(tmp_path):
    final = tmp_path / "sample"
    with pytest.raises(RuntimeError):
        with io.staged_directory(final) as staging:
            (staging / "image.nii.gz").write_text("half", encoding="utf-8")
            raise RuntimeError("interrupted")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with io.staged_directory(final) as staging:
        (staging / "a.txt").write_text("done", encoding="utf-8")
    assert (final / "a.txt").read_text(encoding="utf-8") == "done"
    with pytest.raises(io.InputError, match="already exists"):
        with io.staged_directory(final):
            pass


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nifti_nan_and_inf_are_refused(tmp_path, monkeypatch, suffix, value):
    """ITK's NIfTI reader turns NaN/Inf into 0; the raw data block is checked (in small pieces here)."""
    array = np.random.default_rng(1).random((8, 10, 12)).astype(np.float32)
    path = tmp_path / f"clean{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    monkeypatch.setattr(io, "NIFTI_CHECK_BYTES", 100)  # many pieces: the bad voxel is in the last one
    assert io.read_image(path).GetSize() == (12, 10, 8)
    array[-1, -1, -1] = value
    path = tmp_path / f"bad{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    assert np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).all()  # what ITK alone gives
    with pytest.raises(io.InputError) as nifti_error:
        io.read_image(path)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "bad.mha"))
    with pytest.raises(io.InputError) as mha_error:
        io.read_image(tmp_path / "bad.mha")
    assert str(nifti_error.value) == f"image {path}: contains NaN or infinite voxels"
    assert str(mha_error.value).replace("bad.mha", f"bad{suffix}") == str(nifti_error.value)


def test_staged_directory_ctrl_c_right_after_the_folder_is_made(tmp_path, monkeypatch):
    """The window between creating the partial folder and entering the ``try`` is closed."""
    monkeypatch.setattr(os, "mkdir", interrupt_after(os.mkdir, ".partial-"))  # tempfile.mkdtemp uses os.mkdir too
    with pytest.raises(KeyboardInterrupt):
        with io.staged_directory(tmp_path / "sample"):
            pytest.fail("the block must not run")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["writing", "renaming"])
def test_atomic_write_ctrl_c_leaves_no_temporary_file(tmp_path, monkeypatch, where):
    path = io.write_text("old\n", tmp_path / "manifest.csv")
    if where == "writing":
        monkeypatch.setattr(io.Path, "write_text", interrupt_after(io.Path.write_text, ".partial-"))
    else:
        monkeypatch.setattr(os, "replace", interrupt_after(lambda a, b: None, ".partial-"))
    with pytest.raises(KeyboardInterrupt):
        io.write_text("new\n", path)
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.csv"]
    assert path.read_text(encoding="utf-8") == "old\n"


def test_write_permissions_follow_the_umask(tmp_path):
    """Outputs are ordinary files and folders (not the 0600/0700 of mkstemp/mkdtemp)."""
    umask = os.umask(0o022)
    try:
        image = io.write_image(oblique_image(), tmp_path / "x.nii.gz")
        with io.staged_directory(tmp_path / "sample"):
            pass
    finally:
        os.umask(umask)
    assert image.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "sample").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("initially", [True, False])
def test_import_leaves_itk_warning_display_alone(initially):
    code = ("import SimpleITK as sitk; "
            f"sitk.ProcessObject.SetGlobalWarningDisplay({initially}); "
            "import drdm.physical.io; "
            "print(sitk.ProcessObject.GetGlobalWarningDisplay())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(initially)


def test_reads_hide_itk_warnings_only_while_reading(tmp_path, monkeypatch):
    path = tmp_path / "x.nrrd"
    sitk.WriteImage(oblique_image(), str(path))
    seen = []
    real = sitk.ReadImage
    monkeypatch.setattr(sitk, "ReadImage", lambda *a: (seen.append(sitk.ProcessObject.GetGlobalWarningDisplay()), real(*a))[1])
    assert sitk.ProcessObject.GetGlobalWarningDisplay()
    io.read_image(path)
    with pytest.raises(io.InputError):
        io.read_vector_image(path)  # one component per voxel: refused, after the read
    assert seen == [False, False] and sitk.ProcessObject.GetGlobalWarningDisplay()


def test_labels_must_match_geometry(tmp_path):
    image = oblique_image()
    labels = sitk.Cast(image > 0.5, sitk.sitkUInt8)
    path = tmp_path / "l.nrrd"
    sitk.WriteImage(labels, str(path))
    assert io.read_labels(path, image).GetPixelID() == sitk.sitkUInt8
    shifted = sitk.Image(labels)
    shifted.SetOrigin((0.0, 0.0, 0.0))
    sitk.WriteImage(shifted, str(path))
    with pytest.raises(io.InputError, match="origin"):
        io.read_labels(path, image)
