"""drdm.models: loading the published checkpoint, metadata, refusing what is not a DRDM checkpoint."""

from __future__ import annotations

import pytest
import torch
from drdm.models import CheckpointError, load_checkpoint, untrained_model


def test_published_checkpoint_metadata(cmr_model, checkpoint_path):
    assert (cmr_model.ndims, cmr_model.size, cmr_model.num_steps) == (2, 256, 80)
    assert cmr_model.noise_preset == "cmr-2d" and cmr_model.intensity == "minmax-0-1"
    assert len(cmr_model.sha256) == 64
    assert not cmr_model.network.training
    assert cmr_model.forward_process().image_interpolation == "cubic"


class Payload:
    """An arbitrary Python object: unpickling it would run code of our choosing."""


def test_refuses_arbitrary_pickles(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": Payload()}, path)
    with pytest.raises(CheckpointError, match="unpickling"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "content,message",
    [(b"this is not a checkpoint", "not a PyTorch checkpoint"), (b"", "not a PyTorch checkpoint")],
)
def test_refuses_garbage(tmp_path, content, message):
    path = tmp_path / "garbage.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_refuses_other_state_dicts(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(3, 4).state_dict(), path)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not a DRDM checkpoint"):
        load_checkpoint(path)


def test_refuses_mismatched_weights(tmp_path, checkpoint_path):
    state = torch.load(checkpoint_path, weights_only=True, map_location="cpu")
    state["b1.0.conv0.weight"] = torch.zeros(10, 1, 5, 5)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nothing.pth")


def test_checkpoint_error_is_value_error():
    assert issubclass(CheckpointError, ValueError)


def test_three_d_reference_layout_loads(tmp_path):
    model = untrained_model(3)
    path = tmp_path / "lct.pth"
    torch.save(model.network.state_dict(), path)
    loaded = load_checkpoint(path)
    assert (loaded.ndims, loaded.size, loaded.noise_preset) == (3, 128, "lct-3d")
    state = loaded.network.state_dict()
    assert all(torch.equal(state[k], v) for k, v in model.network.state_dict().items())


def test_untrained_model_leaves_global_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    untrained_model(2)
    assert torch.equal(torch.rand(3), expected)
