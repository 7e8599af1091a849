"""The augmentation study's plumbing on tiny inputs (a few iterations, one or two seeds and folds): every arm runs,
subjects never sit on both sides of a split, the JSON holds consistent paired differences and intervals, and the
Markdown table and the plot are written. The real ``--quick`` run is for the results file, not for the suite."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import REPO

SCRIPT = REPO / "benchmarks" / "augmentation_study.py"
ARMS = ["none", "elastic", "elastic-matched", "bigaug", "drdm", "drdm-small"]
TINY = ["--quick", "--iterations", "2", "--copies", "1", "--model", "random-field-2d", "--crop", "32",
        "--elastic-draws", "2", "--bootstrap", "200", "--threads", "1"]


def study_module():
    spec = importlib.util.spec_from_file_location("augmentation_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def write_subjects(folder: Path, count: int, stack: int = 1) -> None:
    """``count`` labelled subjects (a disc with a core: labels 1 and 2): 2D images, or stacks of ``stack`` slices."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(count):
        yy, xx = np.mgrid[:40, :36]
        labels = ((yy - 20 - k) ** 2 + (xx - 18) ** 2 < 11**2).astype(np.uint8)
        labels[(yy - 20) ** 2 + (xx - 18) ** 2 < 4**2] = 2
        if stack > 1:
            labels = np.stack([labels] * stack)
            labels[0] = 0  # an unlabelled slice: left out on both sides
        image = (labels * 60.0 + rng.random(labels.shape) * 10).astype(np.float32)
        for array, suffix in ((image, ""), (labels, "_gt")):
            item = sitk.GetImageFromArray(array)
            item.SetSpacing((1.5, 1.5, 4.0)[:array.ndim])
            sitk.WriteImage(item, str(folder / f"subject{k}{suffix}.nii.gz"))


def run(arguments: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1",
                               "PYTHONPATH": str(REPO / "DRDMSlicer")})


def test_quick_plumbing_on_a_folder_of_2d_images(tmp_path):
    write_subjects(tmp_path / "data", 5)
    out = tmp_path / "results" / "study"
    completed = run([*TINY, "--data", str(tmp_path / "data"), "--label-suffix", "_gt", "--seeds", "2", "--folds", "2",
                     "--out", str(out)])
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    settings = report["settings"]
    assert settings["quick"] and settings["iterations"] == 2 and settings["arms"] == ARMS
    assert report["classes"] == {"1": "label 1", "2": "label 2"}
    assert len(report["runs"]) == len(ARMS) * 2 * 2
    assert {(r["arm"], r["fold"], r["seed"]) for r in report["runs"]} == {(a, f, s) for a in ARMS for f in (0, 1)
                                                                          for s in (0, 1)}
    for fold in report["folds"]:
        assert len(fold["train"]) == 2 and not set(fold["train"]) & set(fold["test"])
        assert sorted(fold["train"] + fold["test"]) == [f"subject{k}" for k in range(5)]
    assert report["folds"][0]["train"] != report["folds"][1]["train"]
    by = {(r["arm"], r["fold"], r["seed"]): r["dice"] for r in report["runs"]}
    for pair in report["pairs"]:
        differences = [by[(pair["a"], f, s)][pair["class"]] - by[(pair["b"], f, s)][pair["class"]]
                       for f in (0, 1) for s in (0, 1)]
        assert pair["runs"] == 4 and pair["mean"] == pytest.approx(np.mean(differences))
        for low, high in (pair["ci95"], pair["ci95_by_fold"]):  # inside the range of the run differences
            assert min(differences) - 1e-12 <= low <= high <= max(differences) + 1e-12
        assert pair["a_better"] == sum(d > 0 for d in differences)
    assert {("drdm", "elastic-matched"), ("drdm-small", "elastic")} <= {(p["a"], p["b"]) for p in report["pairs"]}
    for arm in ARMS:
        row = report["table"][arm]["mean"]
        values = [r["dice"]["mean"] for r in report["runs"] if r["arm"] == arm]
        assert row["mean"] == pytest.approx(np.mean(values)) and all(0.0 <= v <= 1.0 for v in values)
    sizes = report["sizes"]
    assert sizes["elastic_matched_mean_mm"] == pytest.approx(sizes["drdm_own_mean_mm"], rel=1e-6)
    assert sizes["drdm_small_mean_mm"] == pytest.approx(sizes["elastic_default_mean_mm"], rel=0.1)
    assert report["time"]["wall_s"] > 0 and report["time"]["cpu_s"] > 0
    markdown = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "| drdm − elastic-matched |" in markdown and "| drdm-small |" in markdown
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_stacks_split_by_subject_and_bad_splits_stop(tmp_path):
    """Stacks: each subject's labelled slices stay on one side; the default 3 folds × 2 shrink to what 3 subjects
    allow (1 fold), while folds asked for that do not fit stop clearly."""
    write_subjects(tmp_path / "data", 3, stack=3)
    out = tmp_path / "study"
    completed = run([*TINY, "--data", str(tmp_path / "data"), "--seeds", "1", "--arms", "none", "drdm", "--out", str(out)])
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "3 units: 1 fold(s) of 2 training unit(s) instead of 3 × 2" in completed.stdout
    report = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert (report["settings"]["folds"], report["settings"]["train_per_fold"]) == (1, 2)
    assert report["data"].endswith("3 labelled subjects (6 slices), split by subject")
    (fold,) = report["folds"]
    assert len(fold["train"]) == 2 and fold["test"] == sorted({"subject0", "subject1", "subject2"} - set(fold["train"]))
    assert [(p["a"], p["b"]) for p in report["pairs"]][:1] == [("drdm", "none")]
    completed = run([*TINY, "--data", str(tmp_path / "data"), "--folds", "2", "--train-per-fold", "2", "--out", str(out)])
    assert completed.returncode != 0 and "need more than 4 units, found 3" in completed.stderr


def test_bootstrap_intervals():
    study = study_module()
    rng = np.random.default_rng(0)
    assert study.bootstrap_interval(np.full(6, 0.25), 100, rng) == (0.25, 0.25)
    values = np.array([0.1, 0.2, 0.3, -0.1, 0.0, 0.4])
    low, high = study.bootstrap_interval(values, 2000, rng)
    assert -0.1 < low < values.mean() < high < 0.4
    clustered = study.bootstrap_interval(values, 2000, rng, clusters=np.array([0, 0, 1, 1, 2, 2]))
    assert clustered[0] <= values.mean() <= clustered[1]


def test_centre_crop_and_zoom():
    study = study_module()
    image = np.arange(6 * 10, dtype=np.float32).reshape(6, 10)
    out = study.centre(image, 8, 2, labels=False)
    assert out.shape == (4, 4)
    cropped = np.zeros((8, 8), np.float32)
    cropped[1:7, :] = image[:, 1:9]
    assert np.array_equal(out, cropped.reshape(4, 2, 4, 2).mean(axis=(1, 3)))
    assert np.array_equal(study.centre(image.astype(np.int64), 8, 2, labels=True), cropped[1::2, 1::2])
