"""Training throughput options (issue 12 item 5): DataLoader workers give the same batches, the preprocessing
cache is reused only while a file is unchanged, channels-last computes the same network."""

from __future__ import annotations

import os

import pytest
import SimpleITK as sitk
import torch
from drdm.training import data as training_data
from drdm.training.config import TrainingConfig
from drdm.training.data import TrainingImages
from drdm.training.loader import step_batches
from drdm.training.loop import train


def config(tmp_path, **changes) -> TrainingConfig:
    settings = dict(size=32, width=2, steps=3, batch=2, lr=1e-4, val_samples=1, device="cpu")
    return TrainingConfig(out=str(tmp_path), **{**settings, **changes})


def test_workers_prepare_identical_batches_and_training(tmp_path):
    images = TrainingImages.phantoms(2, 32, count=4)
    serial = list(step_batches(images, config(tmp_path), 1, 0, 2, torch.device("cpu")))
    parallel = list(step_batches(images, config(tmp_path, workers=2), 1, 0, 2, torch.device("cpu")))
    assert len(serial) == len(parallel) == 2
    assert all(torch.equal(a, b) for s, p in zip(serial, parallel) for a, b in zip(s, p))
    one = train(config(tmp_path / "w0"))
    two = train(config(tmp_path / "w2", workers=2))
    assert one.last_loss == two.last_loss
    a, b = one.model.network.state_dict(), two.model.network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_preprocessing_cache_is_reused_while_the_file_is_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "volume.nii.gz"
    image = sitk.GetImageFromArray(torch.rand(4, 20, 24, generator=torch.Generator().manual_seed(0)).numpy())
    image.SetSpacing((1.0, 1.0, 3.0))
    sitk.WriteImage(image, str(path))
    fresh = training_data.load_training_images([path], 2, 32)
    cached = training_data.load_training_images([path], 2, 32, cache=tmp_path / "cache")
    assert len(fresh) == 4 and all(torch.equal(a, b) for a, b in zip(fresh, cached))
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1

    def refuse(*args):
        raise AssertionError("preprocessed again although cached")

    monkeypatch.setattr(training_data, "_preprocess", refuse)
    again = training_data.load_training_images([path], 2, 32, cache=tmp_path / "cache")
    assert all(torch.equal(a, b) for a, b in zip(fresh, again))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # the file changed
    with pytest.raises(AssertionError, match="preprocessed again"):
        training_data.load_training_images([path], 2, 32, cache=tmp_path / "cache")


def test_channels_last_trains_the_same_network(tmp_path):
    default = train(config(tmp_path / "default", steps=2))
    last = train(config(tmp_path / "last", steps=2, channels_last=True))
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(default.model.network(x, 40), last.model.network(x, 40), rtol=0, atol=1e-5)
