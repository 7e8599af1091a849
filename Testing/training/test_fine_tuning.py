"""``drdm train --init MODEL``: fine-tuning starts from a model's weights and noise preset (issue 12 item 3)."""

from __future__ import annotations

import json

import pytest
import SimpleITK as sitk
import torch
from drdm.cli import main
from drdm.model_store.files import load_model_file
from drdm.model_store.loading import load_model_spec
from drdm.model_store.offered import offered_models
from drdm.model_store.registry import bundled_model_path
from drdm.training.phantoms import cardiac_short_axis_phantom
from drdm.training.recovery_error import recovery_error


def write_slices(folder, size: int, seeds) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        image = sitk.GetImageFromArray(cardiac_short_axis_phantom(size, seed=seed)[0][0, 0].numpy())
        image.SetSpacing((1.4, 1.4))
        sitk.WriteImage(image, str(folder / f"slice{seed}.nii.gz"))


def test_short_fine_tune_keeps_the_recovery_of_the_bundled_model(tmp_path, monkeypatch):
    """12 steps at lr 1e-4, batch 1, on 4 phantom slices at the model's own 256² (its exact noise preset): the
    recovery error on a held-out slice stays within 25 % of the starting model's (CPU: about 40 s)."""
    monkeypatch.setenv("DRDM_HOME", str(tmp_path / "home"))
    torch.set_num_threads(2)
    write_slices(tmp_path / "data", 256, range(100, 105))
    held_out = cardiac_short_axis_phantom(256, seed=200)[0][0]
    start = load_model_spec("cmr-2d")
    before = recovery_error(start, [held_out], draws=2)
    assert main(["train", str(tmp_path / "data"), "--init", "cmr-2d", "--steps", "12", "--lr", "1e-4", "--batch", "1",
                 "--val-fraction", "0.2", "--val-samples", "1", "--out", str(tmp_path / "run"), "--name", "cmr-mine",
                 "--quiet", "--device", "cpu"]) == 0
    tuned = load_model_file(tmp_path / "run" / "cmr-mine.safetensors")
    assert (tuned.size, tuned.noise_preset, tuned.noise_overrides, tuned.num_steps) == (256, "cmr-2d", {}, 80)
    changed = [k for k, v in tuned.network.state_dict().items() if not torch.equal(v, start.network.state_dict()[k])]
    assert changed  # it did train
    after = recovery_error(tuned, [held_out], draws=2)
    mean_before, mean_after = sum(before.values()) / 4, sum(after.values()) / 4
    assert mean_before < 1 and mean_after <= 1.25 * mean_before, (before, after)
    metadata = json.loads((tmp_path / "run" / "cmr-mine.json").read_text(encoding="utf-8"))
    assert metadata["init"]["name"] == "cmr-2d" and metadata["init"]["sha256"] == start.sha256
    assert "fine-tuned from cmr-2d" in metadata["trained_on"] and "Apache-2.0" in metadata["licence"]
    assert metadata["recovery_error"]["rows"][0]["images"] == 1 and metadata["training"]["init"] == "cmr-2d"
    assert main(["models", "import", str(tmp_path / "run" / "cmr-mine.safetensors")]) == 0  # now offered everywhere
    (offered,) = [c for c in offered_models() if c.name == "cmr-mine"]
    assert offered.learned and offered.recovery_error == metadata["recovery_error"]["summary"]
    assert load_model_spec("cmr-mine").metadata["init"] == metadata["init"]


@pytest.mark.parametrize("kind", ["name", "safetensors", "pth"])
def test_init_accepts_names_and_files_and_scales_the_preset(kind, tmp_path, request):
    """At --size 64 the preset is the model's scaled to 64² (control grid 16, velocity ×4); with a vanishing
    learning rate the result keeps the initial weights, whatever way the model was named."""
    spec = {"name": "cmr-2d", "safetensors": str(bundled_model_path("cmr-2d"))}.get(kind)
    if kind == "pth":
        spec = str(request.getfixturevalue("checkpoint_path"))
    write_slices(tmp_path / "data", 64, range(3))
    assert main(["train", str(tmp_path / "data"), "--init", spec, "--size", "64", "--steps", "1", "--lr", "1e-12",
                 "--val-samples", "1", "--out", str(tmp_path / "run"), "--quiet", "--device", "cpu"]) == 0
    tuned = load_model_file(tmp_path / "run" / "drdm-model.safetensors")
    start = load_model_spec("cmr-2d")
    assert tuned.size == 64 and tuned.noise_overrides == {"control_size": 16, "velocity_scale": pytest.approx(1.6e-4)}
    assert all((v - start.network.state_dict()[k]).abs().max() < 1e-6 for k, v in tuned.network.state_dict().items())


@pytest.mark.parametrize("options, message", [
    (["--init", "random-field-2d"], "no weights to start from"),
    (["--init", "cmr-2d", "--width", "4"], "has width 10: --width 4 does not fit"),
    (["--init", "cmr-2d", "--dims", "3"], "is a 2D model: --dims 3 does not fit"),
    (["--init", "cmr-2d", "--levels", "40"], "has T = 80 levels: --levels 40 does not fit"),
    (["--init", "cmr-2d", "--noise-preset", "lct-3d"], "trained with noise preset cmr-2d: --noise-preset lct-3d"),
    (["--init", "no-such-model.safetensors"], "no such file"),
])
def test_init_that_does_not_fit_is_one_clear_error(options, message, tmp_path, capsys):
    assert main(["train", "--steps", "1", "--out", str(tmp_path / "run"), "--quiet", "--device", "cpu"] + options) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("drdm: error:") and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run" / "last.pt").exists()
