"""drdm.physical.augmentation's manifest: linear bookkeeping during ``drdm augment`` and no partial file after Ctrl-C."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import interrupt_after
from drdm import cli
from drdm.cli import sample_commands
from drdm.model_store.choice import ModelChoice
from drdm.physical import augment_data_set, augmentation
from drdm.physical.augmentation import plan_jobs, write_manifest

STATS = {"mean_mm": 1.5, "p95_mm": 3.25, "folding_fraction": 0.0, "det_min": 0.71, "det_max": 1.38}


def finish(out: Path, job: augmentation.Job) -> None:
    """What a finished job leaves behind, as far as the manifest is concerned."""
    (out / job.folder).mkdir(parents=True)
    (out / job.folder / "stats.json").write_text(json.dumps(STATS), encoding="utf-8")


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture()
def fake_run(tmp_path, monkeypatch):
    """``drdm augment`` on 3 images × 2 levels with the deformation (in the data-set loop the CLI calls) replaced by a
    stats.json writer; counts the stats.json files read."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a", "b", "c"):
        (data / f"{name}.nii.gz").write_bytes(b"")
    fake = type("M", (), {"name": "fake"})()
    monkeypatch.setattr(sample_commands, "load_for_image", lambda spec, image, device: (fake, ModelChoice("fake")))
    monkeypatch.setattr(augment_data_set, "read_image", lambda path: None)
    monkeypatch.setattr(augment_data_set, "deform_image", lambda model, image, labels, settings: SimpleNamespace(
        statistics={**STATS, "level": settings.level, "seed": settings.seed, "mode": settings.mode,
                    "speed": settings.speed, "model": model.name}))
    monkeypatch.setattr(augment_data_set, "write_sample", lambda staging, *args, **kwargs:
                        (staging / "stats.json").write_text(json.dumps(STATS), encoding="utf-8"))
    reads = []
    real_read_text = Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: (reads.append(self.name), real_read_text(self, *a, **k))[1])
    out = tmp_path / "out"
    arguments = ["augment", str(data), "--model", "fake", "--levels", "30", "60", "--no-qa", "--out", str(out)]
    return out, arguments, reads


def test_augment_reads_each_stats_file_once(fake_run):
    """Six jobs: six stats.json reads (rewriting the manifest after every job read 1 + 2 + ... + 6 + 6 = 27)."""
    out, arguments, reads = fake_run
    assert cli.main(arguments) == 0
    assert reads.count("stats.json") == 6
    assert [int(row["job"]) for row in rows(out / "manifest.csv")] == list(range(6))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_resumed_run_lists_old_and_new_jobs_in_job_order(fake_run):
    out, arguments, reads = fake_run
    assert cli.main(arguments + ["--shard", "0/2"]) == 0  # jobs 0, 2, 4
    assert cli.main(arguments) == 0  # finds 0, 2, 4 done; does 1, 3, 5
    listed = rows(out / "manifest.csv")
    assert [int(row["job"]) for row in listed] == list(range(6))
    jobs = plan_jobs([(out.parent / "data" / f"{n}.nii.gz", None) for n in "abc"], [30, 60], 1, 0)
    assert rows(write_manifest(out, jobs, (0, 1))) == listed  # the same as a full rebuild
    assert float(listed[0]["p95_mm"]) == 3.25


def test_manifest_rebuild_repairs_a_torn_last_row(tmp_path):
    jobs = plan_jobs([(Path("/d/a.nii.gz"), None)], [30, 60], 1, 0)
    manifest = augmentation.Manifest(tmp_path, (0, 1))
    manifest.rebuild(jobs)
    finish(tmp_path, jobs[0])
    manifest.add(jobs[0])
    with open(manifest.path, "a", encoding="utf-8") as handle:
        handle.write("1,/d/a.nii.gz,,60")  # a run killed in the middle of an append
    finish(tmp_path, jobs[1])
    augmentation.Manifest(tmp_path, (0, 1)).rebuild(jobs)
    assert [row["job"] for row in rows(manifest.path)] == ["0", "1"]


@pytest.mark.parametrize("where", ["writing", "renaming"])
def test_ctrl_c_in_write_manifest_leaves_no_partial_file(tmp_path, monkeypatch, where):
    jobs = plan_jobs([(Path("/d/a.nii.gz"), None), (Path("/d/b.nii.gz"), None)], [30], 1, 0)
    for job in jobs:
        finish(tmp_path, job)
    if where == "writing":
        monkeypatch.setattr(Path, "write_text", interrupt_after(Path.write_text, ".partial-"))
    else:
        monkeypatch.setattr(os, "replace", interrupt_after(lambda source, target: None, ".partial-"))
    with pytest.raises(KeyboardInterrupt):
        write_manifest(tmp_path, jobs, (0, 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(job.folder for job in jobs)
