"""``drdm.deform_array``: numpy in, numpy out; bit for bit ``drdm.deform_image``; ``count`` as sampler batches; bad
arrays end in one clear ``DRDMError`` line."""

from __future__ import annotations

import drdm
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from drdm.errors import DRDMError
from drdm.models import untrained_model

TOLERANCE_VOX = 1e-3  # batched vs lone runs of the small untrained model (float32 rounding of batched convolutions)


@pytest.fixture(scope="module")
def model():
    return untrained_model(2, size=32)


def disc(shape: tuple[int, ...], dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc (ball) on a noisy background, and its label map (values 0, 2)."""
    grid = np.indices(shape)
    centre = [s / 2 for s in shape]
    inside = sum((g - c) ** 2 for g, c in zip(grid, centre)) < (min(shape) / 3) ** 2
    noise = np.random.default_rng(0).random(shape) * 10
    return (inside * 100 + noise).astype(dtype), (inside * 2).astype(np.uint8)


def as_image(array: np.ndarray, spacing: tuple[float, ...]) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing[::-1])
    return image


def assert_same(out, k: int, result, spacing: tuple[float, ...]) -> None:
    """Sample ``k`` of a ``deform_array`` result holds exactly the bytes of a ``DeformationResult``."""
    assert np.array_equal(out.images[k], sitk.GetArrayFromImage(result.image))
    assert out.images.dtype == sitk.GetArrayViewFromImage(result.image).dtype
    if out.labels is not None:
        assert np.array_equal(out.labels[k], sitk.GetArrayFromImage(result.labels))
    mm = result.ddf[0].double().numpy() * np.array(spacing).reshape((-1,) + (1,) * len(spacing))
    assert np.array_equal(out.displacement[k], mm)
    assert np.array_equal(out.jacobian[k], sitk.GetArrayFromImage(result.jacobian))
    drop = ("seconds",)
    assert {a: b for a, b in out.statistics[k].items() if a not in drop} == \
        {a: b for a, b in result.statistics.items() if a not in drop}


def test_one_sample_is_deform_image_bit_for_bit(model):
    array, labels = disc((30, 41), np.int16)
    spacing = (1.3, 0.7)
    out = drdm.deform_array(array, spacing, labels, model=model, level=30, seed=5)
    assert out.images.shape == (1, 30, 41) and out.images.dtype == np.int16
    assert out.labels.shape == (1, 30, 41) and set(np.unique(out.labels)) <= {0, 2}
    assert out.displacement.shape == (1, 2, 30, 41) and out.displacement.dtype == np.float64
    assert out.seeds == [5] and out.statistics[0]["seed"] == 5
    result = drdm.deform_image(as_image(array, spacing), as_image(labels, spacing), model=model, level=30, seed=5)
    assert_same(out, 0, result, spacing)
    assert float(np.abs(out.displacement).max()) > 0.1  # it did deform


def test_count_equals_deform_image_count_and_is_close_to_lone_runs(model):
    array, labels = disc((36, 28))
    spacing = (0.9, 1.2)
    out = drdm.deform_array(array, spacing, labels, model=model, level=30, seed=2, count=3, speed="faster")
    assert out.images.shape == (3, 36, 28) and out.seeds == [2, 3, 4]
    many = drdm.deform_image(as_image(array, spacing), as_image(labels, spacing), model=model, level=30, seed=2,
                             count=3, speed="faster")
    assert isinstance(many, list) and len(many) == 3
    for k, result in enumerate(many):
        assert_same(out, k, result, spacing)
        alone = drdm.deform_image(as_image(array, spacing), model=model, level=30, seed=2 + k, speed="faster")
        assert (result.ddf - alone.ddf).abs().max() <= TOLERANCE_VOX
    assert not np.array_equal(out.images[0], out.images[1])  # different seeds, different samples


def test_unbatched_count_gives_each_seed_exactly(model):
    array, _ = disc((32, 32))
    spacing = (1.0, 1.0)
    out = drdm.deform_array(array, spacing, model=model, level=30, seed=7, count=2, batch=False, speed="faster")
    assert out.labels is None
    alone = [drdm.deform_image(as_image(array, spacing), model=model, level=30, seed=7 + k, speed="faster")
             for k in range(2)]
    for k in range(2):
        assert_same(out, k, alone[k], spacing)
    one = drdm.deform_image(as_image(array, spacing), model=model, level=30, seed=7, speed="faster", count=1)
    assert isinstance(one, list) and len(one) == 1 and torch.equal(one[0].ddf, alone[0].ddf)


def test_steering_options_and_3d_pass_through(model):
    """A 3D array (the 2D model slice by slice, coherent), a kept label and a size: the same as deform_image."""
    array, labels = disc((6, 20, 18))
    spacing = (2.0, 1.0, 1.5)
    own = drdm.deform_array(array, spacing, labels, model=model, level=30, keep=[2], speed="faster")
    size = 0.7 * own.statistics[0]["natural_mm"]
    options = dict(model=model, level=30, seed=1, count=2, magnitude=size, keep=[2], speed="faster")
    out = drdm.deform_array(array, spacing, labels, **options)
    assert out.displacement.shape == (2, 3, 6, 20, 18)
    many = drdm.deform_image(as_image(array, spacing), as_image(labels, spacing), **options)
    for k, result in enumerate(many):
        assert_same(out, k, result, spacing)
        assert result.statistics["mean_mm"] == pytest.approx(size, rel=0.1)
    assert np.abs(out.displacement[:, :, labels == 2]).max() == 0.0  # the kept structure held still
    assert np.abs(out.displacement).max() > 0.1


BAD = [
    ("NaN", lambda a, lab: (np.where(a > 50, np.nan, a), (1.0, 1.0), None), "NaN"),
    ("infinite", lambda a, lab: (np.where(a > 50, np.inf, a), (1.0, 1.0), None), "infinite"),
    ("RGB", lambda a, lab: (np.stack([a, a, a], -1), (1.0, 1.0), None), "RGB"),
    ("4D", lambda a, lab: (a[None, None], (1.0, 1.0, 1.0, 1.0), None), "2D .* or 3D"),
    ("1D", lambda a, lab: (a[0], (1.0,), None), "2D .* or 3D"),
    ("spacing length", lambda a, lab: (a, (1.0, 1.0, 1.0), None), "spacing .* 3 values for a 2D array"),
    ("spacing sign", lambda a, lab: (a, (1.0, -1.0), None), "positive"),
    ("spacing text", lambda a, lab: (a, "1mm", None), "spacing"),
    ("labels shape", lambda a, lab: (a, (1.0, 1.0), lab[:-1]), "labels of shape"),
    ("labels fractions", lambda a, lab: (a, (1.0, 1.0), lab + 0.5), "not integers"),
    ("complex", lambda a, lab: (a.astype(np.complex64), (1.0, 1.0), None), "dtype"),
    ("strings", lambda a, lab: (np.full((4, 4), "x"), (1.0, 1.0), None), "dtype"),
    ("empty", lambda a, lab: (np.zeros((0, 5), np.float32), (1.0, 1.0), None), "empty"),
    ("constant", lambda a, lab: (np.ones((9, 9), np.float32), (1.0, 1.0), None), "constant"),
    ("flat 3D", lambda a, lab: (a[None, :1], (1.0, 1.0, 1.0), None), "fewer than two axes"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_arrays_end_in_one_clear_error(model, case):
    _, make, message = case
    array, labels = disc((24, 20))
    bad_array, spacing, bad_labels = make(array, labels)
    with pytest.raises(DRDMError, match=message) as error:
        drdm.deform_array(bad_array, spacing, bad_labels, model=model, level=30)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("count", [0, -1, 1.5, True])
def test_bad_count(model, count):
    array, _ = disc((24, 20))
    with pytest.raises(DRDMError, match="count"):
        drdm.deform_array(array, (1.0, 1.0), model=model, level=30, count=count)


def test_boolean_labels_and_float16_images_are_accepted(model):
    array, labels = disc((24, 20), np.float16)
    out = drdm.deform_array(array, (1.0, 1.0), labels.astype(bool), model=model, level=30, speed="faster")
    assert out.images.dtype == np.float32 and out.labels.dtype == np.uint8
