"""The Python API at the top of the package: six documented functions, ``import drdm`` light, the same results as
the command line for the same inputs."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys

import drdm
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import REPO
from drdm import cli

API = ("load_model", "deform_image", "deform_array", "synthesize", "augment", "evaluate", "jacobian", "train")


def disc(size: int = 48, spacing: float = 1.5) -> tuple[sitk.Image, sitk.Image]:
    """A bright disc on a dark background and its label map, ``size``² pixels of ``spacing`` mm."""
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2
    image = sitk.GetImageFromArray(np.where(inside, 200.0, 20.0).astype(np.float32))
    labels = sitk.GetImageFromArray(inside.astype(np.uint8))
    for item in (image, labels):
        item.SetSpacing((spacing, spacing))
        item.SetOrigin((-10.0, 5.0))
    return image, labels


@pytest.mark.parametrize("name", API)
def test_each_entry_point_is_a_documented_function(name):
    function = getattr(drdm, name)
    assert inspect.isfunction(function) and function.__module__ == "drdm"
    doc = inspect.getdoc(function)
    assert "Args:" in doc and "Returns:" in doc and "Example::" in doc
    assert name in drdm.__all__


def test_importing_every_submodule_replaces_no_entry_point():
    for module in pkgutil.walk_packages(drdm.__path__, "drdm."):
        if module.name.endswith(("monai_adapter", "torchio_adapter", "__main__")):
            continue  # optional libraries; __main__ runs the CLI
        importlib.import_module(module.name)
    assert all(inspect.isfunction(getattr(drdm, name)) and getattr(drdm, name).__module__ == "drdm" for name in API)


def test_import_drdm_stays_light():
    code = ("import sys, drdm; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'numpy', 'SimpleITK', 'matplotlib', 'tqdm', 'safetensors') or m.startswith('drdm.')))")
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(REPO / "DRDMSlicer"), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['drdm.errors', 'drdm.settings']"


def test_deform_image_in_physical_space():
    image, labels = disc()
    result = drdm.deform_image(image, labels, model="random-field-2d", level=40, seed=3, device="cpu")
    assert result.image.GetSize() == image.GetSize() and result.image.GetSpacing() == image.GetSpacing()
    assert result.image.GetOrigin() == image.GetOrigin()
    assert set(np.unique(sitk.GetArrayFromImage(result.labels))) <= {0, 1}
    assert result.statistics["folding_fraction"] == 0 and result.statistics["mean_mm"] > 0
    again = sitk.Resample(image, image, result.transform, sitk.sitkLinear, 0.0, image.GetPixelID())
    assert np.array_equal(sitk.GetArrayFromImage(again), sitk.GetArrayFromImage(result.image))
    model = drdm.load_model("random-field-2d", device="cpu")
    same = drdm.deform_image(image, labels, model=model, level=40, seed=3, device="cpu")
    assert np.array_equal(sitk.GetArrayFromImage(same.image), sitk.GetArrayFromImage(result.image))


def test_auto_chooses_as_the_command_line_does(monkeypatch):
    monkeypatch.setenv("DRDM_MODEL", "random-field-2d")
    image, _ = disc(32)
    result = drdm.deform_image(image, seed=1, device="cpu")
    assert result.statistics["model"] == "random-field-2d"


def read(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_synthesize_equals_drdm_synthesize(tmp_path):
    image, labels = disc()
    sitk.WriteImage(image, str(tmp_path / "disc.nii.gz"))
    sitk.WriteImage(labels, str(tmp_path / "disc_gt.nii.gz"))
    pair = drdm.synthesize(image, labels, model="random-field-2d", level=40, seed=8, device="cpu")
    assert cli.main(["synthesize", str(tmp_path / "disc.nii.gz"), "--labels", str(tmp_path / "disc_gt.nii.gz"),
                     "--model", "random-field-2d", "--level", "40", "--seed", "8", "--device", "cpu",
                     "--out", str(tmp_path / "pairs")]) == 0
    (folder,) = (tmp_path / "pairs").iterdir()
    for name, ours in (("moving", pair.moving), ("fixed", pair.fixed), ("fixed_labels", pair.fixed_labels)):
        assert np.array_equal(read(folder / f"{name}.nii.gz"), sitk.GetArrayFromImage(ours)), name
    assert pair.ground_truth is pair.synthesis.transform


def test_augment_writes_what_drdm_augment_writes(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for k in range(2):
        image, labels = disc(32 + 8 * k)
        sitk.WriteImage(image, str(data / f"case{k}.nii.gz"))
        sitk.WriteImage(labels, str(data / f"case{k}_gt.nii.gz"))
    options = dict(model="random-field-2d", label_suffix="_gt", levels=[30, 40], seed=4, device="cpu", qa=False)
    manifest = drdm.augment([data], tmp_path / "api", **options, report=lambda line: None)
    assert cli.main(["augment", str(data), "--model", "random-field-2d", "--label-suffix", "_gt", "--levels", "30", "40",
                     "--seed", "4", "--device", "cpu", "--no-qa", "--out", str(tmp_path / "cli")]) == 0
    assert manifest == tmp_path / "api" / "manifest.csv"
    folders = sorted(p.name for p in (tmp_path / "cli").iterdir() if p.is_dir())
    assert len(folders) == 4 and folders == sorted(p.name for p in (tmp_path / "api").iterdir() if p.is_dir())
    for folder in folders:
        for name in ("image.nii.gz", "labels.nii.gz"):
            assert np.array_equal(read(tmp_path / "api" / folder / name), read(tmp_path / "cli" / folder / name))
        stats = [json.loads((tmp_path / run / folder / "stats.json").read_text()) for run in ("api", "cli")]
        assert stats[0]["mean_mm"] == stats[1]["mean_mm"]
    assert manifest.read_text().count("\n") == (tmp_path / "cli" / "manifest.csv").read_text().count("\n") == 5


def test_evaluate_scores_the_ground_truth_as_perfect(tmp_path):
    image, labels = disc(32)
    sitk.WriteImage(image, str(tmp_path / "disc.nii.gz"))
    sitk.WriteImage(labels, str(tmp_path / "disc_gt.nii.gz"))
    assert cli.main(["synthesize", str(tmp_path / "disc.nii.gz"), "--labels", str(tmp_path / "disc_gt.nii.gz"),
                     "--model", "random-field-2d", "--seed", "2", "--device", "cpu", "--out", str(tmp_path / "pairs")]) == 0
    report = drdm.evaluate(tmp_path / "pairs", "{pair}/transform.h5", tmp_path / "report")
    assert (tmp_path / "report" / "results.csv").is_file()
    assert max(row["epe_mean_mm"] for row in report.rows) < 1e-6


def test_train_builds_the_run_as_drdm_train_does(tmp_path):
    result = drdm.train(tmp_path / "run", ndims=2, size=16, width=4, steps=2, batch=1, phantoms=2, val_samples=0,
                        device="cpu", name="tiny")
    assert result.steps == 2 and result.weights == tmp_path / "run" / "tiny.safetensors"
    assert drdm.load_model(str(result.weights), device="cpu").size == 16
