"""The project's model format (safetensors + JSON), `drdm models import`, and the bundled demo models."""

from __future__ import annotations

import json

import pytest
import torch
from drdm import registry
from drdm.cli import main
from drdm.model_files import load_model_file, model_paths, read_metadata, save_model
from drdm.models import BUNDLED_MODELS, CheckpointError, bundled_model_path, load_model_spec, untrained_model

METADATA_FIELDS = ("ndims", "size", "num_steps", "noise_preset", "intensity", "trained_on", "training_command",
                   "drdm_version", "sha256", "width", "noise_overrides")


def test_round_trip_keeps_weights_and_metadata(tmp_path):
    model = untrained_model(3, size=16, width=3, noise_overrides={"control_size": 8})
    model.name = "tiny"
    weights, metadata = save_model(model, tmp_path / "tiny", training_command="drdm train --dims 3")
    assert (weights.name, metadata.name) == ("tiny.safetensors", "tiny.json")
    loaded = load_model_file(weights)
    original, restored = model.network.state_dict(), loaded.network.state_dict()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    stored = json.loads(metadata.read_text(encoding="utf-8"))
    assert all(key in stored for key in METADATA_FIELDS)
    assert (loaded.ndims, loaded.size, loaded.network.width, loaded.noise_overrides) == (3, 16, 3, {"control_size": 8})
    assert loaded.forward_process().control_size == 8
    metadata.unlink()  # the header copy is enough
    assert read_metadata(weights)["name"] == "tiny" and load_model_file(weights).size == 16


def test_modified_weights_are_refused(tmp_path):
    weights, _ = save_model(untrained_model(2, size=32, width=2), tmp_path / "m")
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the metadata"):
        load_model_file(weights)


def test_foreign_files_are_refused(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(CheckpointError, match="not DRDM model metadata"):
        load_model_file(tmp_path / "x.json")
    (tmp_path / "y.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_model_file(tmp_path / "y.safetensors")
    with pytest.raises(CheckpointError, match="no such file"):
        load_model_file(tmp_path / "z.safetensors")


def test_import_of_the_published_checkpoint_gives_identical_outputs(checkpoint_path, cmr_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DRDM_HOME", str(tmp_path))
    assert main(["models", "import", str(checkpoint_path), "--name", "cmr-imported"]) == 0
    assert "cmr-imported" in capsys.readouterr().out
    imported = load_model_spec("cmr-imported")
    weights, _ = model_paths(tmp_path / "models" / "cmr-imported")
    assert imported.source == str(weights)
    metadata = read_metadata(weights)
    assert metadata["source_sha256"] == cmr_model.sha256 and metadata["size"] == 256
    x = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(imported.network(x, 40), cmr_model.network(x, 40))
    assert main(["models", "import", str(checkpoint_path), "--name", "cmr-imported"]) == 2  # exists
    assert "already exists" in capsys.readouterr().err
    assert main(["models", "import", str(checkpoint_path), "--name", "cmr-2d"]) == 2  # registry name
    assert main(["models", "import", str(tmp_path / "nothing.pth")]) == 2


@pytest.mark.parametrize("name", BUNDLED_MODELS)
def test_bundled_models_are_small_verified_and_trained_by_drdm_train(name):
    path = bundled_model_path(name)
    assert path.is_file(), f"{path} is missing: run bash scripts/train_demo_models.sh"
    assert path.stat().st_size + path.with_suffix(".json").stat().st_size <= 2_000_000
    assert registry.verify(name)
    model = load_model_spec(name)
    assert model.ndims == int(name[-2]) and model.extra["training_command"].startswith("drdm train ")
    assert "phantom" in model.trained_on


def test_bundled_model_is_the_last_resort_default(tmp_path, monkeypatch):
    import drdm.models as models

    monkeypatch.setenv("DRDM_HOME", str(tmp_path))
    monkeypatch.delenv("DRDM_MODEL", raising=False)
    monkeypatch.setattr(models, "__file__", str(tmp_path / "pkg" / "drdm" / "models.py"))  # no ../shared near it
    assert models.find_default_checkpoint() == bundled_model_path("drdm-demo-2d")
    assert load_model_spec(None).name == "drdm-demo-2d"


def test_demo_runs_with_the_bundled_model(tmp_path, capsys):
    from drdm.cli import main

    assert main(["demo", "--model", "drdm-demo-2d", "--out", str(tmp_path), "--device", "cpu"]) == 0
    assert "drdm-demo-2d" in capsys.readouterr().out
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
    assert stats["model"] == "drdm-demo-2d" and stats["folding_fraction"] == 0.0
