"""A ``drdm augment`` manifest as training data: originals and copies mixed for MONAI (dataset items) and TorchIO
(``SubjectsDataset``), the files found wherever the output folder moved, clear errors otherwise."""

from __future__ import annotations

import shutil
from pathlib import Path

import drdm
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from drdm.errors import DRDMError
from drdm.physical.augmentation import read_manifest
from drdm.transforms import augmented_items, augmented_subjects


def write_case(folder: Path, name: str, shift: int) -> None:
    image = np.full((24, 20), 20.0, np.float32)
    labels = np.zeros((24, 20), np.uint8)
    labels[6 + shift:16 + shift, 5:14] = 1
    image[labels == 1] = 150.0
    for array, suffix in ((image, ""), (labels, "_gt")):
        item = sitk.GetImageFromArray(array)
        item.SetSpacing((1.5, 1.5))
        sitk.WriteImage(item, str(folder / f"{name}{suffix}.nii.gz"))


@pytest.fixture(scope="module")
def augmented(tmp_path_factory) -> Path:
    """Two cases with labels, two copies each (random-field-2d, quick), under ``root/augmented``."""
    root = tmp_path_factory.mktemp("manifest")
    (root / "data").mkdir()
    write_case(root / "data", "case0", 0)
    write_case(root / "data", "case1", 3)
    drdm.augment([root / "data"], root / "augmented", model="random-field-2d", label_suffix="_gt", per_level=2,
                 qa=False, device="cpu", report=lambda line: None)
    return root


def test_items_mix_originals_and_copies(augmented):
    items = augmented_items(augmented / "augmented", originals=2, copies=1)
    assert len(items) == 2 * (2 + 1)
    assert [item["copy"] for item in items] == [False, False, True] * 2
    originals = [item for item in items if not item["copy"]]
    assert {Path(item["image"]).name for item in originals} == {"case0.nii.gz", "case1.nii.gz"}
    assert {Path(item["label"]).name for item in originals} == {"case0_gt.nii.gz", "case1_gt.nii.gz"}
    for item in items:
        assert Path(item["image"]).is_file() and Path(item["label"]).is_file()
        if item["copy"]:
            assert Path(item["image"]).name == "image.nii.gz" and Path(item["label"]).name == "labels.nii.gz"
            assert Path(item["source"]).name in ("case0.nii.gz", "case1.nii.gz")
    assert len(augmented_items(augmented / "augmented" / "manifest.csv")) == 2 * (1 + 2)  # defaults: once, all copies
    assert len(augmented_items(augmented / "augmented", originals=0)) == 4
    only = augmented_items(augmented / "augmented", sources=[augmented / "data" / "case1.nii.gz"], image_key="img",
                           label_key="seg")
    assert len(only) == 3 and {Path(i["source"]).name for i in only} == {"case1.nii.gz"} and "seg" in only[0]


def test_monai_dataset_loads_the_items(augmented):
    from monai.data import CacheDataset, DataLoader
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    items = augmented_items(augmented / "augmented", copies=1)
    load = Compose([LoadImaged(keys=["image", "label"]), EnsureChannelFirstd(keys=["image", "label"])])
    data = CacheDataset(items, transform=load, progress=False)
    batch = next(iter(DataLoader(data, batch_size=4)))
    assert batch["image"].shape == (4, 1, 20, 24) and batch["label"].shape == (4, 1, 20, 24)
    assert set(torch.unique(batch["label"]).tolist()) <= {0, 1}
    assert batch["copy"].tolist() == [False, True, False, True]


def test_torchio_subjects(augmented):
    import torchio as tio

    subjects = augmented_subjects(augmented / "augmented", originals=1, copies=2, transform=tio.RescaleIntensity())
    assert len(subjects) == 6
    first = subjects[1]
    assert first["copy"] is True and first["image"].shape == (1, 20, 24, 1) and first["label"].shape == (1, 20, 24, 1)
    assert float(first["image"].data.max()) == pytest.approx(1.0)  # the transform ran
    batch = next(iter(tio.SubjectsLoader(subjects, batch_size=3)))
    assert batch["image"][tio.DATA].shape == (3, 1, 20, 24, 1)


def test_copies_are_found_after_the_folder_moves_and_originals_from_root(augmented, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere"
    shutil.copytree(augmented / "augmented", moved)
    assert len(augmented_items(moved)) == 6
    assert all(str(s.image).startswith(str(moved)) for s in read_manifest(moved))
    # a manifest written with relative input paths reads them from root (default: the current folder)
    monkeypatch.chdir(augmented)
    drdm.augment(["data/case0.nii.gz"], "relative", model="random-field-2d", label_suffix="_gt", qa=False,
                 device="cpu", report=lambda line: None)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DRDMError, match="pass root="):
        augmented_items(augmented / "relative")
    assert len(augmented_items(augmented / "relative", root=augmented)) == 2


def test_clear_errors(augmented, tmp_path):
    with pytest.raises(DRDMError, match="no such file"):
        augmented_items(tmp_path / "nothing")
    with pytest.raises(DRDMError, match="no copies of"):
        augmented_items(augmented / "augmented", sources=[tmp_path / "other.nii.gz"])
    with pytest.raises(DRDMError, match="originals"):
        augmented_items(augmented / "augmented", originals=-1)
    with pytest.raises(DRDMError, match="copies"):
        augmented_items(augmented / "augmented", copies=1.5)
    broken = tmp_path / "broken"
    shutil.copytree(augmented / "augmented", broken)
    victim = next(p for p in sorted(broken.iterdir()) if p.is_dir())
    (victim / "image.nii.gz").unlink()
    with pytest.raises(DRDMError, match="deformed image .* is not there"):
        augmented_items(broken)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DRDMError, match="not a drdm augment manifest"):
        augmented_items(tmp_path / "other.csv")
