"""Training (Algorithm 1): losses, reproducible resume, torchrun DDP equivalence, data, CLI errors."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from drdm.cli import main
from drdm.model_store.files import load_model_file
from drdm.training.config import TrainingConfig
from drdm.training.data import TrainingImages, geometric_augmentation, intensity_augmentation, sample_generator
from drdm.training.loop import train
from drdm.training.losses import folding_penalty, recovery_losses, reference_negative_jacobian, relative_recovery_error

REPO = Path(__file__).resolve().parents[2]
TINY = ["--size", "32", "--width", "2", "--levels", "80", "--val-samples", "2", "--quiet", "--device", "cpu"]


def _weights(folder: Path, name: str = "drdm-model") -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in load_model_file(folder / f"{name}.json").network.state_dict().items()}


def test_perfect_prediction_minimises_distance_and_angle():
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(2, 2, 16, 16, generator=generator) * 0.01
    losses = recovery_losses(torch.zeros_like(target), -target, target)
    assert float(losses["dist"]) == pytest.approx(0.0, abs=1e-9)
    assert float(losses["angle"]) == pytest.approx(-1.0, abs=1e-5)
    wrong = recovery_losses(torch.zeros_like(target), target, target)
    assert float(wrong["dist"]) > 3.9 and float(wrong["angle"]) == pytest.approx(1.0, abs=1e-5)
    assert float(relative_recovery_error(-target, target).max()) < 1e-6
    assert torch.allclose(relative_recovery_error(torch.zeros_like(target), target), torch.ones(2))


def test_paper_regulariser_penalises_folding_reference_term_hardly_does():
    size = 32
    smooth = torch.zeros(1, 2, size, size)
    assert float(folding_penalty(smooth, "paper")) == 0.0
    folded = smooth.clone()
    x = torch.arange(size, dtype=torch.float32)
    folded[0, 0] = (-4.5 * torch.sin(x / 3.0)[:, None]).expand(size, size) / size  # d u0 / d x0 down to -1.5: folds
    assert float(folding_penalty(folded, "paper")) > 0.05
    assert float(folding_penalty(folded, "reference")) < 1e-6  # SPEC §9.6: essentially inactive


def test_reference_negative_jacobian_matches_its_definition():
    field = torch.randn(1, 2, 6, 5, generator=torch.Generator().manual_seed(1))
    b0 = torch.zeros_like(field)
    b0[:, :, 1:] = field[:, :, 1:] - field[:, :, :-1]
    f0 = torch.zeros_like(field)
    f0[:, :, :-1] = field[:, :, 1:] - field[:, :, :-1]
    expected = b0[:, 0] * f0[:, 1] - b0[:, 1] * f0[:, 0]
    assert torch.allclose(reference_negative_jacobian(field), expected)
    field3 = torch.randn(1, 3, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    assert reference_negative_jacobian(field3).shape == (1, 4, 4, 4)


def test_augmentation_is_deterministic_per_key_and_stays_finite():
    image = TrainingImages.phantoms(2, 32).training_image(sample_generator(0, 0, 0))
    a = intensity_augmentation(geometric_augmentation(image, sample_generator(3, 5, 1)), sample_generator(3, 5, 1))
    b = intensity_augmentation(geometric_augmentation(image, sample_generator(3, 5, 1)), sample_generator(3, 5, 1))
    c = intensity_augmentation(geometric_augmentation(image, sample_generator(3, 5, 2)), sample_generator(3, 5, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == image.shape and torch.isfinite(a).all()
    volume = TrainingImages.phantoms(3, 16).training_image(sample_generator(0, 0, 0))
    assert geometric_augmentation(volume, sample_generator(1, 2, 3)).shape == volume.shape


def test_resume_continues_exactly(tmp_path):
    """6 steps in one go == 3 steps, interruption, resume to 6 (bit-identical weights and Adam state on CPU)."""
    common = ["train", *TINY, "--batch", "2", "--checkpoint-every", "3", "--val-every", "3", "--log-every", "1"]
    assert main([*common, "--steps", "6", "--out", str(tmp_path / "straight")]) == 0
    assert main([*common, "--steps", "3", "--out", str(tmp_path / "resumed")]) == 0
    assert main([*common, "--steps", "6", "--resume", "--out", str(tmp_path / "resumed")]) == 0
    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["optimizer"]["state"]
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["optimizer"]["state"]
    assert all(torch.equal(a[k]["exp_avg_sq"], b[k]["exp_avg_sq"]) for k in a)
    with open(tmp_path / "resumed" / "metrics.csv", encoding="utf-8") as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle)]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_refuses_changed_settings(tmp_path, capsys):
    common = ["train", *TINY, "--steps", "1", "--out", str(tmp_path)]
    assert main(common) == 0
    assert main([*common, "--resume", "--lr", "0.01"]) == 2
    assert "settings differ" in capsys.readouterr().err
    assert main(common) == 2  # an existing run is never overwritten silently
    assert "pass --resume" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--size", "20"], "multiple of 8"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--amp", "fp16", "--device", "cpu"], "fp16 needs a CUDA device"),
    (["--batch", "3", "--val-fraction", "1.5"], "--val-fraction"),
])
def test_bad_training_settings(tmp_path, capsys, args, message):
    assert main(["train", "--quiet", "--out", str(tmp_path / "run"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "drdm-model.safetensors").exists()


def _write_images(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    paths = []
    for i in range(count):
        array = np.random.default_rng(i).random((6, 40, 30)).astype(np.float32) * 100
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((1.0, 1.3, 4.0))
        paths.append(folder / f"case{i}.nii.gz")
        sitk.WriteImage(image, str(paths[-1]))
    return paths


def test_trains_on_image_files_with_held_out_validation(tmp_path):
    _write_images(tmp_path / "images", 4)
    out = tmp_path / "run"
    assert main(["train", str(tmp_path / "images"), *TINY, "--steps", "2", "--val-every", "2", "--val-fraction", "0.25",
                 "--name", "mine", "--out", str(out)]) == 0
    model = load_model_file(out / "mine.safetensors")
    assert model.ndims == 2 and model.size == 32 and model.network.width == 2
    assert "4 image files" in model.trained_on and "3 for training (18 2D images), 1 held out" in model.trained_on
    assert model.extra["training_command"].startswith("drdm train ")
    with open(out / "metrics.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[-1]["step"] == "2" and float(rows[-1]["val_relative_error"]) > 0


def test_from_files_rejects_what_it_cannot_use(tmp_path):
    paths = _write_images(tmp_path / "images", 1)
    with pytest.raises(ValueError, match="3D model cannot train on a 2D image"):
        flat = tmp_path / "flat.nii.gz"
        sitk.WriteImage(sitk.GetImageFromArray(np.random.default_rng(0).random((20, 20)).astype(np.float32)), str(flat))
        TrainingImages.from_files([flat], 3, 16, 0.0, 0)
    images = TrainingImages.from_files(paths, 3, 16, 0.0, 0)
    assert len(images.training) == 1 and images.training[0].shape == (1, 16, 16, 16)
    assert float(images.training[0].min()) == 0.0 and float(images.training[0].max()) == pytest.approx(1.0, abs=1e-6)


def test_training_reduces_the_validation_error(tmp_path):
    """A short run on phantoms must beat the untrained (random output layer) network on the held-out phantoms."""
    config = TrainingConfig(out=str(tmp_path), size=32, width=4, steps=60, lr=1e-3, val_every=60, val_samples=4,
                            device="cpu", log_every=60, zero_init=False)
    result = train(config)
    untrained = TrainingConfig(**{**config.__dict__, "out": str(tmp_path / "u"), "steps": 1, "lr": 1e-12})
    baseline = train(untrained)
    assert result.validation_error < 0.5 * baseline.validation_error


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun is not installed")
def test_torchrun_two_processes_equal_one(tmp_path):
    """DDP (2 CPU processes, gloo) with global batch 2 == one process with batch 2 (SGD-like tolerance below)."""
    args = ["train", *TINY, "--batch", "2", "--steps", "3", "--lr", "1e-4", "--val-every", "3", "--log-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "DRDMSlicer")}
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    completed = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "drdm", *args,
                                "--out", str(tmp_path / "ddp")], env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert main([*args, "--out", str(tmp_path / "single")]) == 0
    ddp_model = load_model_file(tmp_path / "ddp" / "drdm-model.json")
    single_model = load_model_file(tmp_path / "single" / "drdm-model.json")
    ddp, single = ddp_model.network.state_dict(), single_model.network.state_dict()
    initial = _initial_weights()
    # conv0 biases in front of an instance norm have a zero gradient mathematically (the norm removes them);
    # Adam turns their rounding noise into ±lr steps, so they are compared through the outputs instead.
    inert = {k for k in single if k.endswith("conv0.bias") and single_model.network.get_submodule(k.rsplit(".", 2)[0]).ln}
    moved = max(float((single[k] - initial[k]).abs().max()) for k in single if k not in inert)
    difference = max(float((ddp[k] - single[k]).abs().max()) for k in single if k not in inert)
    assert moved > 1e-4  # 3 Adam steps of lr 1e-4
    assert difference < 1e-6, f"DDP and single-process weights differ by {difference:.3g} (moved {moved:.3g})"
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    levels = torch.tensor([10, 60])
    with torch.no_grad():
        assert torch.allclose(ddp_model.network(x, levels), single_model.network(x, levels), rtol=0, atol=1e-6)


def _initial_weights() -> dict[str, torch.Tensor]:
    from drdm.models import untrained_model
    from drdm.training.initialisation import zero_output_layer

    network = untrained_model(2, 32, seed=0, width=2).network
    zero_output_layer(network)  # new networks start with a zero output layer (TrainingConfig.zero_init)
    return network.state_dict()


def test_zero_init_starts_new_networks_at_the_zero_solution(tmp_path):
    """Default for new networks: recovery error within 5 % of 1 before training (random output layer: far above
    1), the output weights 1000× smaller and the rest identical; everything trains; --no-zero-init opts out."""
    from drdm.training.initialisation import initial_model
    from drdm.training.recovery_error import evaluation_phantoms, recovery_error

    images = evaluation_phantoms(2, 32, count=2)[1]
    zero = initial_model(TrainingConfig(out=str(tmp_path), size=32, width=4), torch.device("cpu"))
    assert max(abs(error - 1.0) for error in recovery_error(zero, images).values()) < 0.05
    random = initial_model(TrainingConfig(out=str(tmp_path), size=32, width=4, zero_init=False), torch.device("cpu"))
    assert min(recovery_error(random, images).values()) > 2.0
    assert torch.equal(zero.network.conv_out.weight, 1e-3 * random.network.conv_out.weight)
    assert not zero.network.conv_out.bias.detach().any()
    assert all(torch.equal(a, b) for (ka, a), (kb, b) in zip(zero.network.state_dict().items(),
                                                            random.network.state_dict().items()) if "conv_out" not in ka)
    result = train(TrainingConfig(out=str(tmp_path / "run"), size=32, width=4, steps=3, lr=1e-3, val_every=3,
                                  val_samples=2, device="cpu", log_every=1))
    trained = result.model.network.state_dict()
    assert float(trained["conv_out.weight"].abs().max()) > 0
    assert not torch.equal(trained["b1.0.conv0.weight"], random.network.state_dict()["b1.0.conv0.weight"])
    assert not torch.equal(trained["conv_out.weight"], zero.network.state_dict()["conv_out.weight"])
    assert main(["train", *TINY, "--steps", "1", "--no-zero-init", "--out", str(tmp_path / "nz")]) == 0
    assert json.loads((tmp_path / "nz" / "drdm-model.json").read_text(encoding="utf-8"))["training"]["zero_init"] is False
