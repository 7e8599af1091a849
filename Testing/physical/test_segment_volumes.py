"""Per-segment volume change (``drdm.physical.segment_volumes``) and its place in ``stats.json``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from drdm.cli import main
from drdm.physical.segment_volumes import segment_volume_changes, volume_change_rows


def labelled(array: np.ndarray, spacing: tuple[float, ...]) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    return image


def test_volumes_in_millilitres_and_percent():
    before = np.zeros((10, 12, 14), dtype=np.uint8)
    before[2:6, 3:8, 4:10] = 2  # 4 * 5 * 6 = 120 voxels
    before[7:9, 1:3, 1:3] = 4  # 8 voxels, gone after
    after = np.zeros_like(before)
    after[2:7, 3:8, 4:10] = 2  # 150 voxels: +25 %
    after[0, 0, 0] = 9  # a new label
    spacing = (0.5, 2.0, 2.5)  # 2.5 mm³ per voxel
    changes = segment_volume_changes(labelled(before, spacing), labelled(after, spacing), names={2: "liver"})
    assert [c["label"] for c in changes] == [2, 4, 9]
    liver, gone, new = changes
    assert liver["name"] == "liver" and gone["name"] == "label 4" and liver["unit"] == "mL"
    assert liver["before"] == pytest.approx(120 * 2.5 / 1000) and liver["after"] == pytest.approx(150 * 2.5 / 1000)
    assert liver["change_percent"] == pytest.approx(25.0)
    assert gone["after"] == 0 and gone["change_percent"] == pytest.approx(-100.0)
    assert new["before"] == 0 and new["change_percent"] is None
    rows = dict(volume_change_rows(changes))
    assert rows["liver volume"] == "0.30 → 0.38 mL (+25.0 %)" and rows["label 9 volume"].endswith("(new)")
    assert volume_change_rows(None) == []


def test_two_dimensional_labels_give_areas():
    before = np.zeros((8, 8), dtype=np.uint8)
    before[2:4, 2:6] = 1
    changes = segment_volume_changes(labelled(before, (0.5, 3.0)), labelled(before, (0.5, 3.0)))
    assert changes == [{"label": 1, "name": "label 1", "before": 12.0, "after": 12.0, "unit": "mm²",
                        "change_percent": 0.0}]
    assert volume_change_rows(changes) == [("label 1 area", "12.00 → 12.00 mm² (+0.0 %)")]


def test_generate_writes_the_volume_change_of_the_written_labels(tmp_path):
    labels = np.zeros((40, 48), dtype=np.uint8)
    labels[10:30, 12:36] = 3
    labels[15:25, 18:28] = 5
    image = labelled((100.0 * (labels > 0) + 50.0 * (labels == 5)).astype(np.float32), (1.2, 0.9))
    sitk.WriteImage(image, str(tmp_path / "v.nii.gz"))
    sitk.WriteImage(labelled(labels, (1.2, 0.9)), str(tmp_path / "v_gt.nii.gz"))
    assert main(["generate", str(tmp_path / "v.nii.gz"), "--labels", str(tmp_path / "v_gt.nii.gz"), "--model",
                 "random-field-2d", "--seed", "0", "--out", str(tmp_path / "out")]) == 0
    folder = next((tmp_path / "out").iterdir())
    changes = json.loads((folder / "stats.json").read_text(encoding="utf-8"))["segment_volumes"]
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labels.nii.gz")))
    for change in changes:
        value = change["label"]
        assert change["before"] == pytest.approx((labels == value).sum() * 1.2 * 0.9)
        assert change["after"] == pytest.approx((written == value).sum() * 1.2 * 0.9)
    assert [c["label"] for c in changes] == [3, 5] and any(c["change_percent"] != 0 for c in changes)
