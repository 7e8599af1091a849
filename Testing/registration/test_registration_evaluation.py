"""``drdm evaluate`` / ``drdm.evaluate``: analytic predictions of known error, the direction check, every format."""

from __future__ import annotations

import csv
from pathlib import Path

import drdm
import nibabel
import numpy as np
import pytest
import SimpleITK as sitk
from drdm.cli import main

SIZE = (24, 20, 16)  # ITK (x, y, z)
SPACING = (1.0, 1.5, 2.0)
ORIGIN = (-5.0, 3.0, 10.0)
SHIFT_MM = (0.6, 0.0, 0.8)  # |shift| = 1 mm


def grid_image(array: np.ndarray, vector: bool = False) -> sitk.Image:
    image = sitk.GetImageFromArray(array, isVector=vector)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    return image


def truth_vectors() -> np.ndarray:
    """A smooth analytic ground-truth field, (z, y, x, 3) LPS mm, up to about 2 mm."""
    z, y, x = np.meshgrid(*[np.linspace(0, np.pi, n) for n in SIZE[::-1]], indexing="ij")
    return np.stack([2 * np.sin(y) * np.sin(z), 1.5 * np.sin(x) * np.cos(z), np.sin(x + y)], axis=-1)


def box_labels(low: tuple[int, int, int], high: tuple[int, int, int], value: int = 3) -> np.ndarray:
    labels = np.zeros(SIZE[::-1], dtype=np.uint8)
    labels[low[0]:high[0], low[1]:high[1], low[2]:high[2]] = value
    return labels


def field_transform(vectors: np.ndarray) -> sitk.DisplacementFieldTransform:
    return sitk.DisplacementFieldTransform(sitk.Cast(grid_image(vectors, vector=True), sitk.sitkVectorFloat64))


def make_pair(folder: Path, fixed_labels: np.ndarray, moving_labels: np.ndarray) -> Path:
    """A pair folder as ``drdm synthesize`` writes it (the images' content does not matter to the scores)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("fixed", "moving"):
        sitk.WriteImage(grid_image(rng.random(SIZE[::-1]).astype(np.float32)), str(folder / f"{name}.nii.gz"))
    sitk.WriteImage(grid_image(fixed_labels), str(folder / "fixed_labels.nii.gz"))
    sitk.WriteImage(grid_image(moving_labels), str(folder / "moving_labels.nii.gz"))
    sitk.WriteTransform(field_transform(truth_vectors()), str(folder / "transform.h5"))
    return folder


def read_rows(report: Path) -> list[dict]:
    with open(report / "results.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def row_of(rows: list[dict], pair: str, label: str) -> dict:
    return next(r for r in rows if r["pair"] == pair and r["label"] == label)


@pytest.fixture()
def labelled_pair(tmp_path) -> Path:
    labels = box_labels((4, 5, 6), (12, 15, 18))
    return make_pair(tmp_path / "pairs" / "p0", labels, labels)


def test_constant_error_of_one_millimetre_and_time(labelled_pair, tmp_path):
    predicted = truth_vectors() + np.array(SHIFT_MM)
    sitk.WriteTransform(field_transform(predicted), str(labelled_pair / "predicted.h5"))
    (labelled_pair / "predicted.h5.time.txt").write_text("12.5\n", encoding="utf-8")
    report = drdm.evaluate(labelled_pair.parent, "{pair}/predicted.h5", tmp_path / "report")
    assert not report.warnings
    rows = read_rows(tmp_path / "report")
    assert [r["label"] for r in rows] == ["all", "foreground", "3"]
    for row in rows:
        for key in ("epe_mean_mm", "epe_median_mm", "epe_p95_mm"):
            assert float(row[key]) == pytest.approx(1.0, abs=1e-6)
        assert float(row["seconds"]) == 12.5 and row["direction_warning"] == "False"
    assert float(row_of(rows, "p0", "all")["inverse_epe_mean_mm"]) > 1.0
    for name in ("summary.md", "boxplot_epe_mean_mm.png", "boxplot_dice.png", "pairs/p0.png"):
        assert (tmp_path / "report" / name).is_file()


def test_pairs_without_labels_are_scored_on_the_whole_grid(labelled_pair, tmp_path):
    for name in ("fixed_labels.nii.gz", "moving_labels.nii.gz"):
        (labelled_pair / name).unlink()
    sitk.WriteImage(grid_image(truth_vectors() + np.array(SHIFT_MM), vector=True), str(labelled_pair / "p.nii.gz"))
    report = drdm.evaluate(labelled_pair.parent, "{pair}/p.nii.gz", tmp_path / "report")
    (row,) = read_rows(tmp_path / "report")
    assert row["label"] == "all" and row["dice"] == "" and row["seconds"] == "" and not report.warnings
    assert float(row["epe_median_mm"]) == pytest.approx(1.0, abs=1e-6)


def test_dice_and_hausdorff_of_a_translation_match_numpy(tmp_path):
    fixed = box_labels((4, 5, 6), (12, 15, 18))
    moving = box_labels((4, 5, 9), (12, 15, 21))  # the box 3 voxels further along x
    pair = make_pair(tmp_path / "pairs" / "p0", fixed, moving)
    shift_voxels = 2  # the prediction pulls from 2 voxels further along x: warped[..., i] = moving[..., i + 2]
    translation = sitk.TranslationTransform(3, (shift_voxels * SPACING[0], 0.0, 0.0))
    sitk.WriteTransform(translation, str(pair / "predicted.tfm"))
    drdm.evaluate(pair.parent, "{pair}/predicted.tfm", tmp_path / "report")
    warped = np.zeros_like(moving)
    warped[..., :-shift_voxels] = moving[..., shift_voxels:]
    a, b = fixed > 0, warped > 0
    expected = 2 * (a & b).sum() / (a.sum() + b.sum())
    row = row_of(read_rows(tmp_path / "report"), "p0", "3")
    assert float(row["dice"]) == pytest.approx(expected, abs=1e-8) and 0 < expected < 1
    assert 0 < float(row["hd95_mm"]) <= 1.0 * SPACING[0] + 1e-9  # one voxel apart along x
    assert float(row["folding_percent"]) == 0 and float(row["det_min"]) == pytest.approx(1.0)


def test_hausdorff_is_zero_for_a_perfect_overlap(labelled_pair, tmp_path):
    sitk.WriteTransform(sitk.TranslationTransform(3, (0.0, 0.0, 0.0)), str(labelled_pair / "identity.h5"))
    drdm.evaluate(labelled_pair.parent, "{pair}/identity.h5", tmp_path / "report")
    row = row_of(read_rows(tmp_path / "report"), "p0", "foreground")
    assert float(row["dice"]) == 1.0 and float(row["hd95_mm"]) == 0.0


def test_an_inverted_prediction_is_flagged(labelled_pair, tmp_path, capsys):
    truth = grid_image(truth_vectors(), vector=True)
    inverse = sitk.InvertDisplacementField(truth, maximumNumberOfIterations=50)
    sitk.WriteTransform(sitk.DisplacementFieldTransform(inverse), str(labelled_pair / "backwards.h5"))
    report = drdm.evaluate(labelled_pair.parent, "{pair}/backwards.h5", tmp_path / "report")
    assert list(report.warnings) == ["p0"]
    assert "drdm: warning: p0: the inverse of the prediction fits far better" in capsys.readouterr().err
    rows = read_rows(tmp_path / "report")
    assert all(r["direction_warning"] == "True" for r in rows)
    row = row_of(rows, "p0", "foreground")
    assert float(row["inverse_epe_mean_mm"]) < 0.2 * float(row["epe_mean_mm"])
    assert "inverse fits far better" in (tmp_path / "report" / "summary.md").read_text(encoding="utf-8")


def nifti_5d(vectors: np.ndarray, path: Path, intent: bool) -> None:
    """ANTs' layout: (x, y, z, 1, 3), LPS vectors, RAS affine in the header."""
    data = np.transpose(vectors, (2, 1, 0, 3))[:, :, :, None, :].astype(np.float32)
    affine = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])
    affine[:3, 3] = [-ORIGIN[0], -ORIGIN[1], ORIGIN[2]]
    image = nibabel.Nifti1Image(data, affine)
    if intent:
        image.header.set_intent("vector")
    nibabel.save(image, str(path))


def write_formats(folder: Path, vectors: np.ndarray) -> list[str]:
    field = grid_image(vectors, vector=True)
    sitk.WriteTransform(field_transform(vectors), str(folder / "field.h5"))
    sitk.WriteTransform(field_transform(vectors), str(folder / "field.tfm"))
    composite = sitk.CompositeTransform(3)  # ITK applies the last added first: x + u(x), then + 0
    composite.AddTransform(sitk.TranslationTransform(3, (0.0, 0.0, 0.0)))
    composite.AddTransform(field_transform(vectors))
    sitk.WriteTransform(composite, str(folder / "composite.h5"))
    for name in ("field.nii.gz", "field.nrrd", "field.mha"):
        sitk.WriteImage(field, str(folder / name))
    nifti_5d(vectors, folder / "ants_Warp.nii.gz", intent=True)
    nifti_5d(vectors, folder / "ants_nointent.nii.gz", intent=False)
    return ["field.h5", "field.tfm", "composite.h5", "field.nii.gz", "field.nrrd", "field.mha", "ants_Warp.nii.gz",
            "ants_nointent.nii.gz"]


def test_every_format_is_read(labelled_pair):
    from drdm.registration.evaluation import score_pair

    predicted = truth_vectors() + np.array(SHIFT_MM)
    for name in write_formats(labelled_pair, predicted):
        row = score_pair(labelled_pair, labelled_pair / name).rows[0]
        assert row["label"] == "all"
        assert row["epe_mean_mm"] == pytest.approx(1.0, abs=1e-5), name
        assert row["epe_p95_mm"] == pytest.approx(1.0, abs=1e-5), name


def test_cli_errors_leave_no_report(labelled_pair, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["evaluate", str(labelled_pair.parent), "--predicted", "{pair}/missing.h5", "--out", str(out)]) == 2
    assert "1 of 1 predicted transforms are missing" in capsys.readouterr().err and not out.exists()
    assert main(["evaluate", str(labelled_pair.parent), "--predicted", "predicted.h5", "--out", str(out)]) == 2
    assert "must contain {pair}" in capsys.readouterr().err
    (labelled_pair / "bad.h5").write_text("not a transform", encoding="utf-8")
    assert main(["evaluate", str(labelled_pair.parent), "--predicted", "{pair}/bad.h5", "--out", str(out)]) == 2
    assert "cannot be read as an ITK transform" in capsys.readouterr().err and not out.exists()
    assert main(["evaluate", str(tmp_path / "nowhere"), "--predicted", "{pair}/x.h5", "--out", str(out)]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_synthesized_pairs_scored_with_their_own_ground_truth(tmp_path, capsys):
    """End to end, 2D: ``drdm synthesize`` (the built-in random-field model) then ``drdm evaluate`` of the ground
    truth itself (perfect) and of the identity (the ground truth's own size as error)."""
    labels = np.zeros((40, 48), dtype=np.uint8)
    labels[10:30, 12:36] = 3
    labels[15:25, 18:28] = 5
    image = sitk.GetImageFromArray((100.0 * (labels > 0) + 50.0 * (labels == 5)).astype(np.float32))
    image.SetSpacing((1.2, 0.9))
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    sitk.WriteImage(image, str(tmp_path / "v.nii.gz"))
    sitk.WriteImage(label_image, str(tmp_path / "v_gt.nii.gz"))
    assert main(["synthesize", str(tmp_path / "v.nii.gz"), "--labels", str(tmp_path / "v_gt.nii.gz"), "--model",
                 "random-field-2d", "--seed", "1", "--count", "2", "--out", str(tmp_path / "pairs")]) == 0
    assert main(["evaluate", str(tmp_path / "pairs"), "--predicted", "{pair}/transform.h5",
                 "--out", str(tmp_path / "report")]) == 0
    assert "2 pairs scored" in capsys.readouterr().out
    rows = read_rows(tmp_path / "report")
    assert {r["label"] for r in rows} == {"all", "foreground", "3", "5"} and len(rows) == 8
    for row in rows:
        assert float(row["epe_p95_mm"]) < 1e-6 and row["direction_warning"] == "False"
        assert float(row["inverse_epe_mean_mm"]) > 0.5  # the random field moves things: its inverse differs
    pairs = sorted(p for p in (tmp_path / "pairs").iterdir())
    for pair in pairs:
        sitk.WriteTransform(sitk.TranslationTransform(2, (0.0, 0.0)), str(pair / "identity.tfm"))
    rows = drdm.evaluate(tmp_path / "pairs", "{pair}/identity.tfm", tmp_path / "identity").rows
    for pair in pairs:
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(pair / "ddf.nii.gz"))).astype(np.float64)
        row = next(r for r in rows if r["pair"] == pair.name and r["label"] == "all")
        assert row["epe_mean_mm"] == pytest.approx(np.sqrt((truth ** 2).sum(-1)).mean(), rel=1e-6)
