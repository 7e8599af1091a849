"""``torchrun -m drdm augment`` / ``synthesize``: each process takes its share (RANK/WORLD_SIZE) and the union
equals the single-process run: the same folders with the same images, the same manifest rows."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from drdm import cli
from drdm.cli import sample_commands
from drdm.training.torchrun import torchrun_shard

TORCHRUN = Path(sys.executable).with_name("torchrun")


def small_images(folder: Path, count: int = 3) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(count):
        array = (rng.random((40, 36)) * 100).astype(np.float32)
        array[10:30, 8:28] += 200
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((1.1, 0.9))
        sitk.WriteImage(image, str(folder / f"case{k}.nii.gz"))
        labels = sitk.GetImageFromArray((array > 150).astype(np.uint8))
        labels.CopyInformation(image)
        sitk.WriteImage(labels, str(folder / f"case{k}_gt.nii.gz"))
    return folder


def run(arguments: list[str], processes: int, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DRDM_HOME": str(cwd / "home")}
    env.pop("DRDM_MODEL", None)
    if processes == 1:
        command = [sys.executable, "-m", "drdm", *arguments]
    else:
        command = [str(TORCHRUN), "--standalone", "--nproc-per-node", str(processes), "-m", "drdm", *arguments]
    # the children write UTF-8 (tqdm bars); the parent's locale may have been set to "C" by a library earlier in the
    # pytest process, so decode explicitly rather than with locale.getpreferredencoding()
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, encoding="utf-8", errors="replace",
                               timeout=600)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    return completed


def manifest_rows(out: Path, name: str = "manifest.csv") -> list[dict[str, str]]:
    with open(out / name, encoding="utf-8", newline="") as handle:
        return [{k: v.replace(str(out), "OUT") for k, v in row.items()} for row in csv.DictReader(handle)]


def folders(out: Path) -> dict[str, bytes]:
    return {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p / "image.nii.gz"))).tobytes()
            for p in sorted(out.iterdir()) if p.is_dir()}


@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun is not installed beside this Python")
def test_torchrun_augment_equals_the_single_process_run(tmp_path):
    data = small_images(tmp_path / "data")
    common = ["augment", str(data), "--label-suffix", "_gt", "--model", "random-field-2d", "--levels", "20", "40",
              "--per-level", "1", "--seed", "5", "--no-qa"]
    run(common + ["--out", str(tmp_path / "single")], 1, tmp_path)
    run(common + ["--out", str(tmp_path / "two")], 2, tmp_path)
    single, two = folders(tmp_path / "single"), folders(tmp_path / "two")
    assert len(single) == 6 and single == two  # same folders, the same deformed images byte for byte
    assert manifest_rows(tmp_path / "single") == manifest_rows(tmp_path / "two")
    shard_rows = manifest_rows(tmp_path / "two", "manifest-shard0of2.csv") + manifest_rows(tmp_path / "two",
                                                                                           "manifest-shard1of2.csv")
    assert sorted(shard_rows, key=lambda row: int(row["job"])) == manifest_rows(tmp_path / "single")  # their union


@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun is not installed beside this Python")
def test_torchrun_synthesize_equals_the_single_process_run(tmp_path):
    data = small_images(tmp_path / "data", count=1)
    common = ["synthesize", str(data / "case0.nii.gz"), "--model", "random-field-2d", "--count", "3", "--seed", "2",
              "--level", "20"]
    run(common + ["--out", str(tmp_path / "single")], 1, tmp_path)
    run(common + ["--out", str(tmp_path / "two")], 2, tmp_path)
    names = sorted(p.name for p in (tmp_path / "single").iterdir())
    assert len(names) == 3 and names == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in names:
        for file in ("moving.nii.gz", "fixed.nii.gz"):
            a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "single" / name / file)))
            b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "two" / name / file)))
            assert np.array_equal(a, b)


def test_shard_from_the_environment(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert torchrun_shard() is None and sample_commands.work_shard("1/3") == (1, 3)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert torchrun_shard() == (2, 4) and sample_commands.work_shard("0/1") == (2, 4)
    with pytest.raises(ValueError, match="use one of them"):
        sample_commands.work_shard("1/2")


def test_last_shard_merges_the_manifests(tmp_path):
    """Two shards run one after the other (as on two machines sharing a folder): the second writes manifest.csv."""
    data = small_images(tmp_path / "data", count=2)
    arguments = ["augment", str(data), "--label-suffix", "_gt", "--model", "random-field-2d", "--levels", "20", "--no-qa",
                 "--out", str(tmp_path / "out")]
    assert cli.main(arguments + ["--shard", "0/2"]) == 0
    assert (tmp_path / "out" / "manifest-shard0of2.csv").is_file() and not (tmp_path / "out" / "manifest.csv").exists()
    assert cli.main(arguments + ["--shard", "1/2"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_file()) == [
        "manifest-shard0of2.csv", "manifest-shard1of2.csv", "manifest.csv"]
    assert [row["job"] for row in manifest_rows(tmp_path / "out")] == ["0", "1"]
