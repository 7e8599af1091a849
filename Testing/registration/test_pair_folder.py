"""``SynthesisResult.save``: Python users write the pair folders ``drdm evaluate`` reads, as ``drdm synthesize`` does."""

from __future__ import annotations

import drdm
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import field_only_model
from drdm.registration.synthesis import synthesize_pair
from drdm.settings import DeformationSettings
from drdm.training.phantoms import cardiac_short_axis_phantom


@pytest.fixture(scope="module")
def pair():
    phantom, labels = cardiac_short_axis_phantom(64, seed=0)
    image = sitk.GetImageFromArray(phantom[0, 0].numpy())
    label_image = sitk.GetImageFromArray(labels[0, 0].numpy().astype(np.uint8))
    for item in (image, label_image):
        item.SetSpacing((1.5, 1.5))
    model = field_only_model(2, 64)
    return synthesize_pair(model, image, label_image, settings=DeformationSettings(level=60, seed=4, speed="faster"))


def test_a_saved_pair_is_what_evaluate_reads_and_the_truth_scores_zero(pair, tmp_path):
    folder = pair.save(tmp_path / "pairs" / "p0", inverse=True)
    names = {path.name for path in folder.iterdir()}
    assert {"moving.nii.gz", "fixed.nii.gz", "moving_labels.nii.gz", "fixed_labels.nii.gz", "transform.h5",
            "transform_inverse.h5", "ddf.nii.gz", "jacobian.nii.gz", "stats.json", "qa.png"} <= names
    report = drdm.evaluate(tmp_path / "pairs", "{pair}/transform.h5", tmp_path / "report")  # the truth as prediction
    rows = report.rows
    assert rows and all(row["epe_mean_mm"] < 1e-6 for row in rows), rows
    shifted = sitk.ReadTransform(str(folder / "transform_inverse.h5"))  # a wrong prediction scores above zero
    sitk.WriteTransform(shifted, str(folder / "wrong.h5"))
    wrong = drdm.evaluate(tmp_path / "pairs", "{pair}/wrong.h5", tmp_path / "report_wrong")
    assert max(row["epe_mean_mm"] for row in wrong.rows) > 0.1


def test_saving_never_overwrites_and_leaves_nothing_half_written(pair, tmp_path):
    folder = tmp_path / "p0"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists"):
        pair.save(folder, qa=False)
    assert [p.name for p in folder.iterdir()] == ["keep.txt"] and len(list(tmp_path.iterdir())) == 1
