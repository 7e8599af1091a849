"""GPU paths (skipped without CUDA): sampling matches the CPU, the CUDA-graph step the eager one, training runs with AMP."""

from __future__ import annotations

import pytest
import torch
from conftest import field_only_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def test_generate_on_cuda_matches_cpu():
    from drdm.sampler import generate
    from drdm.training.phantoms import cardiac_phantom

    model = field_only_model(2, 64)
    image, labels = cardiac_phantom(64, 2)
    cpu = generate(model, image, labels, mode="reference", start_level=40, generator=torch.Generator().manual_seed(0), speed="fast")
    model.to("cuda")
    gpu = generate(model, image.cuda(), labels.cuda(), mode="reference", start_level=40, generator=torch.Generator().manual_seed(0),
                   speed="fast")
    assert torch.allclose(gpu.ddf.cpu(), cpu.ddf, atol=1e-3)


@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_training_steps_on_cuda(tmp_path, amp):
    from drdm.training.config import TrainingConfig
    from drdm.training.loop import train

    result = train(TrainingConfig(out=str(tmp_path), size=32, width=2, steps=2, device="cuda", amp=amp, val_samples=1))
    assert result.weights.is_file() and torch.isfinite(torch.tensor(result.last_loss))


@pytest.mark.parametrize("mode, speed", [("reference", "faithful"), ("diffeomorphic", "fast")])
def test_cuda_graph_recovery_step_gives_the_eager_sample(mode, speed):
    """The replayed CUDA graph runs the eager step's kernels on the same data: the same sample, bit for bit."""
    from drdm.model_store.loading import load_model_spec
    from drdm.sampler import generate
    from drdm.training.phantoms import cardiac_short_axis_phantom

    model = load_model_spec("cmr-2d").to("cuda")
    image = cardiac_short_axis_phantom(256, seed=0)[0].expand(2, -1, -1, -1).contiguous().cuda()
    results = [generate(model, image, start_level=48, mode=mode, speed=speed, cuda_graph=graph,
                        generator=[torch.Generator().manual_seed(seed) for seed in (3, 4)]) for graph in (False, True)]
    assert torch.equal(results[0].ddf, results[1].ddf)
    assert torch.equal(results[0].image, results[1].image)
    assert results[1].ddf.abs().max() > 1  # a real deformation, not an empty replay


def test_capture_failure_falls_back_to_the_eager_step():
    from drdm.kernels.graph_capture import captured_or_eager

    def synchronising(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (x * float(x.sum()),)  # a host read: cannot be captured

    x = torch.ones(4, device="cuda")
    with pytest.warns(UserWarning, match="capture"):
        step = captured_or_eager(synchronising, (x,))
    assert step is synchronising
    assert torch.equal(step(x)[0], x * 4)


def test_the_default_follows_the_graph_rule_and_gives_the_eager_sample():
    """``cuda_graph=None``: the graph for a 2D batch of 1 (drdm.settings.cuda_graph_by_rule), none in 3D; same samples."""
    from drdm.model_store.loading import load_model_spec
    from drdm.models import untrained_model
    from drdm.sampler import generate
    from drdm.training.phantoms import cardiac_phantom, cardiac_short_axis_phantom

    model = load_model_spec("cmr-2d").to("cuda")
    image = cardiac_short_axis_phantom(256, seed=0)[0].cuda()
    auto, eager = (generate(model, image, mode="reference", start_level=48, speed="fast", cuda_graph=choice,
                            generator=torch.Generator().manual_seed(7)) for choice in (None, False))
    assert auto.cuda_graph and not eager.cuda_graph
    assert torch.equal(auto.ddf, eager.ddf)
    three = untrained_model(3, size=32).to("cuda")
    result = generate(three, cardiac_phantom(32, 3)[0].cuda(), speed="faithful", start_level=20, levels=[1, 0],
                      mode="diffeomorphic",
                      generator=torch.Generator().manual_seed(0))
    assert not result.cuda_graph


def test_tf32_precision_stays_near_the_exact_network():
    """TF32 put the published network 1.1e-4 / 4.4e-4 (layouts) from the reference vectors on an H200; allow 10×."""
    from drdm.model_store.loading import load_model_spec
    from drdm.network import convolution_precision
    from drdm.training.phantoms import cardiac_short_axis_phantom

    network = load_model_spec("cmr-2d").to("cuda").network
    x = cardiac_short_axis_phantom(256, seed=0)[0].cuda()
    t = torch.full((1,), 40, dtype=torch.long, device="cuda")
    outputs = {}
    for precision in ("exact", "tf32"):
        with torch.inference_mode(), convolution_precision(precision):
            outputs[precision] = network(x, t)
    assert float((outputs["tf32"] - outputs["exact"]).abs().max()) < 5e-3
