"""The bundled published model ``cmr-2d``: identical to the authors' .pth, provenance, its recorded recovery
error (re-measured), and the default of every front end without ../shared or a network."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from conftest import REPO
from drdm.model_store import download, registry
from drdm.model_store.files import read_metadata, recovery_error_summary
from drdm.model_store.loading import find_default_checkpoint, load_model_spec
from drdm.model_store.registry import BUNDLED_FOLDER, bundled_model_path
from drdm.models import file_digest
from drdm.training.recovery_error import evaluation_phantoms, recovery_error_row


def test_bundled_weights_equal_the_published_checkpoint_bit_for_bit(checkpoint_path, cmr_model):
    bundled = load_model_spec("cmr-2d")
    assert bundled.source == str(bundled_model_path("cmr-2d"))
    original, converted = cmr_model.network.state_dict(), bundled.network.state_dict()
    assert list(original) == list(converted)
    assert all(original[k].dtype == converted[k].dtype and torch.equal(original[k], converted[k]) for k in original)
    x = torch.rand(2, 1, 256, 256, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for t in (0, 37, 79):
            assert torch.equal(bundled.network(x, t), cmr_model.network(x, t))
    assert (bundled.ndims, bundled.size, bundled.num_steps, bundled.noise_preset, bundled.intensity) == (
        cmr_model.ndims, cmr_model.size, cmr_model.num_steps, cmr_model.noise_preset, cmr_model.intensity)
    assert bundled.metadata["source_sha256"] == file_digest(checkpoint_path) == registry.PUBLISHED_CMR_SHA256


def test_provenance_licence_citation_and_notice():
    metadata = read_metadata(bundled_model_path("cmr-2d"))
    assert metadata["source_sha256"].startswith("c9e93ccb") and metadata["source_url"] == registry.PUBLISHED_CMR_URL
    assert metadata["source_file"].endswith("000000_cmr_recresacnet.pth") and len(metadata["source_commit"]) == 40
    assert metadata["licence"] == "Apache-2.0" and "10.1016/j.media.2026.103987" in metadata["citation"]
    notice = (BUNDLED_FOLDER / "NOTICE").read_text(encoding="utf-8")
    assert metadata["source_sha256"] in notice and "Apache License, Version 2.0" in notice
    assert "10.1016/j.media.2026.103987" in notice
    assert download.verify("cmr-2d") and download.fetch("cmr-2d") == bundled_model_path("cmr-2d")  # nothing to download
    weights = bundled_model_path("cmr-2d")
    assert weights.stat().st_size + weights.with_suffix(".json").stat().st_size < 2_000_000


def test_recorded_recovery_error_is_what_the_model_measures():
    """The phantom row of the recorded table, re-measured now; the demo's phantom is one the model suits."""
    model = load_model_spec("cmr-2d")
    table = model.metadata["recovery_error"]
    data, images = evaluation_phantoms(2, model.size)
    (recorded,) = [row for row in table["rows"] if row["data"] == data]
    torch.set_num_threads(2)
    measured = recovery_error_row(model, data, images, draws=table["draws"], seed=table["seed"])
    assert max(abs(a - b) for a, b in zip(measured["errors"], recorded["errors"])) <= 2e-4  # rounded to 1e-4
    assert max(measured["errors"]) < 1.0  # every level: the model recovers deformations of the phantom
    assert recovery_error_summary(model.metadata) == table["rows"][0]["mean"] < 1.0
    assert [len(row["errors"]) for row in table["rows"]] == [len(table["levels"])] * len(table["rows"])


def test_default_model_is_the_bundled_one_with_nothing_else_around(tmp_path, monkeypatch):
    monkeypatch.setenv("DRDM_HOME", str(tmp_path))
    monkeypatch.delenv("DRDM_MODEL", raising=False)
    assert find_default_checkpoint() == bundled_model_path("cmr-2d")
    assert load_model_spec(None).name == "cmr-2d"
    monkeypatch.setenv("DRDM_MODEL", "random-field-2d")  # what the user names wins
    assert load_model_spec(None).name == "random-field-2d"


def test_demo_runs_offline_without_shared(tmp_path):
    """A fresh checkout with no ../shared, no cache and no network: ``python -m drdm demo`` uses cmr-2d."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "DRDMSlicer"), "DRDM_HOME": str(tmp_path / "home"),
           "DRDM_SHARED": str(tmp_path / "no-shared"), "OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE",
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-m", "drdm", "demo", "--out", str(tmp_path / "demo"), "--device", "cpu"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "model: cmr-2d" in done.stdout and "QA picture:" in done.stdout
    (folder,) = [p for p in (tmp_path / "demo").iterdir() if p.is_dir()]
    stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
    assert stats["model"] == "cmr-2d" and stats["folding_fraction"] == 0.0 and stats["mean_mm"] > 1.0
    assert (folder / "qa.png").stat().st_size > 10_000 and (folder / "labels.nii.gz").is_file()
