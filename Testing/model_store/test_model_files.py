"""The project's model format (safetensors + JSON) and `drdm models import`."""

from __future__ import annotations

import json

import pytest
import torch
from drdm.cli import main
from drdm.model_store.files import load_model_file, model_paths, read_metadata, save_model
from drdm.model_store.loading import load_model_spec
from drdm.models import CheckpointError, random_field_model, untrained_model

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


def test_a_random_field_only_model_has_no_weights_to_save(tmp_path):
    with pytest.raises(ValueError, match="no weights"):
        save_model(random_field_model("random-field-2d"), tmp_path / "rf")
    assert list(tmp_path.iterdir()) == []
