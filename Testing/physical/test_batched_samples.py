"""Batched samples: ``count > 1`` as one sampler batch gives the samples of one-by-one runs (per-sample seeds)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from drdm.models import untrained_model
from drdm.physical.deform import deform_image, deform_images, estimate_memory_bytes, samples_per_chunk
from drdm.physical.geometry import plan_working_grid
from drdm.sampler import generate
from drdm.settings import DeformationSettings  # noqa: E402
from drdm.training.phantoms import cardiac_phantom

TOLERANCE_VOX = 1e-3  # float32 rounding of batched convolutions, carried through the compositions (seen: 3e-4)


@pytest.fixture(scope="module")
def model():
    return untrained_model(2, size=32)


@pytest.mark.parametrize("mode", ["reference", "diffeomorphic"])
def test_generator_groups_equal_separate_runs(model, mode):
    image, _ = cardiac_phantom(32, 2, seed=3)
    seeds = [5, 9, 11]
    alone = [generate(model, image, speed="faithful", start_level=40, levels=[6, 3, 0], mode=mode,
                      generator=torch.Generator().manual_seed(s)) for s in seeds]
    batched = generate(model, image.expand(3, -1, -1, -1), speed="faithful", start_level=40, levels=[6, 3, 0], mode=mode,
                       generator=[torch.Generator().manual_seed(s) for s in seeds])
    for k, one in enumerate(alone):
        assert torch.equal(batched.ddf_random[k:k + 1], one.ddf_random)  # the same random stream per sample
        assert (batched.ddf[k:k + 1] - one.ddf).abs().max() <= TOLERANCE_VOX
    assert not torch.allclose(batched.ddf[0], batched.ddf[1])  # different seeds, different samples
    with pytest.raises(ValueError, match="equal groups"):
        generate(model, image.expand(3, -1, -1, -1), mode="reference", speed="faithful", start_level=40, levels=[0],
                 generator=[torch.Generator(), torch.Generator()])


def _volume() -> sitk.Image:
    array = cardiac_phantom(40, 2, seed=1)[0][0, 0].numpy()[:, 4:36]
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((1.2, 0.9))
    image.SetOrigin((3.0, -7.0))
    return image


@pytest.mark.parametrize("limit", [None, "one"])
def test_deform_images_equal_deform_image(model, monkeypatch, limit):
    image = _volume()
    grid = plan_working_grid(tuple(reversed(image.GetSize())), (0.9, 1.2), 2, model.size, None)
    if limit == "one":  # room for one sample per batch only: three chunks
        monkeypatch.setenv("DRDM_MEMORY_LIMIT_BYTES", str(estimate_memory_bytes(grid) + 1))
        assert samples_per_chunk(grid, 3) == 1
    else:
        monkeypatch.setenv("DRDM_MEMORY_LIMIT_BYTES", str(10 * estimate_memory_bytes(grid)))
        assert samples_per_chunk(grid, 3) == 3
    steps = []
    many = deform_images(model, image, settings=DeformationSettings(level=30, seed=1, count=3, speed="fast"),
                         progress=lambda done, total: steps.append((done, total)), batch=True)
    assert steps[-1] == (60, 60) and [d for d, _ in steps] == sorted(d for d, _ in steps)
    for seed, result in zip([1, 2, 3], many):
        alone = deform_image(model, image, settings=DeformationSettings(level=30, seed=seed, mode="diffeomorphic", speed="fast"))
        assert result.statistics["seed"] == seed
        assert (result.ddf - alone.ddf).abs().max() <= TOLERANCE_VOX
        assert result.image.GetSize() == image.GetSize() and result.image.GetSpacing() == image.GetSpacing()


def test_cpu_default_runs_one_by_one_bit_identical(model):
    """On the CPU ``count > 1`` is not batched by default (no measured gain): each sample is the lone run's bytes."""
    image = _volume()
    many = deform_images(model, image, settings=DeformationSettings(level=30, seed=4, count=2, mode="reference",
                                                                    speed="fast"))
    for seed, result in zip([4, 5], many):
        assert torch.equal(result.ddf, deform_image(model, image, settings=DeformationSettings(level=30, seed=seed,
            mode="reference", speed="fast")).ddf)
