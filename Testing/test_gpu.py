"""GPU paths (skipped without CUDA): sampling matches the CPU, training runs with AMP."""

from __future__ import annotations

import pytest
import torch
from conftest import field_only_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def test_generate_on_cuda_matches_cpu():
    from drdm.phantoms import cardiac_phantom
    from drdm.sampler import generate

    model = field_only_model(2, 64)
    image, labels = cardiac_phantom(64, 2)
    cpu = generate(model, image, labels, start_level=40, generator=torch.Generator().manual_seed(0), speed="fast")
    model.to("cuda")
    gpu = generate(model, image.cuda(), labels.cuda(), start_level=40, generator=torch.Generator().manual_seed(0),
                   speed="fast")
    assert torch.allclose(gpu.ddf.cpu(), cpu.ddf, atol=1e-3)


@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_training_steps_on_cuda(tmp_path, amp):
    from drdm.training import TrainingConfig, train

    result = train(TrainingConfig(out=str(tmp_path), size=32, width=2, steps=2, device="cuda", amp=amp, val_samples=1))
    assert result.weights.is_file() and torch.isfinite(torch.tensor(result.last_loss))
