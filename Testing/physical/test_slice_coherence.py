"""Coherent slices (drdm.physical.slice_coherence): a 2D model on a volume gets one deformation smooth through the slices,
each slice keeping the statistics of the 2D forward process; ``independent`` stays the authors' per-slice way."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import field_only_model
from drdm.models import random_field_model
from drdm.noise import ForwardProcess
from drdm.physical.deform import deform_image
from drdm.physical.qa import central_views
from drdm.physical.slice_coherence import through_plane_roughness
from drdm.settings import DeformationSettings  # noqa: E402
from drdm.slice_stack import SliceStack, coherent_normals, coherent_scales, slice_stack


def near_isotropic_volume(slices: int = 16, size: int = 48, spacing: float = 1.2, oblique: bool = True) -> sitk.Image:
    """A textured blob volume, ``slices`` × ``size`` × ``size`` voxels of ``spacing`` mm, optionally oblique."""
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in (slices, size, size)), indexing="ij")
    rng = np.random.default_rng(0)
    array = np.exp(-(x**2 + y**2) * 3) * (1 + 0.3 * np.sin(7 * x) * np.cos(5 * y + 2 * z)) + 0.05 * rng.random(x.shape)
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((spacing,) * 3)
    if oblique:
        c, s = np.cos(0.4), np.sin(0.4)
        image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    image.SetOrigin((10.0, -5.0, 3.0))
    return image


def test_coherent_normals_keep_unit_statistics_per_slice_and_correlate_neighbours():
    stack = SliceStack.regular(40, 2.0)
    values = coherent_normals(stack, cell=16.0, shape=(2, 64, 64), generator=torch.Generator().manual_seed(1))
    assert values.shape == (40, 2, 64, 64)
    per_slice = values.flatten(1)
    assert per_slice.mean(1).abs().max() < 0.05  # 8192 values a slice: N(0, 1) means within ~4.5 sigma
    assert (per_slice.std(1) - 1).abs().max() < 0.05
    neighbour = torch.corrcoef(torch.stack([per_slice[10], per_slice[11]]))[0, 1]
    far = torch.corrcoef(torch.stack([per_slice[0], per_slice[39]]))[0, 1]
    assert neighbour > 0.8 and far.abs() < 0.1  # 2 voxels apart vs 78 voxels (about 5 cells) apart


def test_coherent_normals_are_seeded():
    stack = SliceStack.regular(5, 3.0)
    first = coherent_normals(stack, 8.0, (2, 4, 4), torch.Generator().manual_seed(3))
    again = coherent_normals(stack, 8.0, (2, 4, 4), torch.Generator().manual_seed(3))
    assert torch.equal(first, again)


def test_coherent_scales_is_the_lipschitz_lower_envelope():
    stack = SliceStack.regular(5, 1.0)
    scale = torch.tensor([1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2], dtype=torch.float64)  # two stacks
    out = coherent_scales(scale, stack, slope=0.2)
    assert torch.allclose(out[:5], torch.tensor([0.9, 0.7, 0.5, 0.7, 0.9], dtype=torch.float64))
    assert torch.allclose(out[5:], torch.tensor([1.0, 0.8, 0.6, 0.4, 0.2], dtype=torch.float64))
    assert (out <= scale).all()


def test_slice_stack_choice():
    assert slice_stack("independent", 10, 4.0) is None and slice_stack("coherent", None, 4.0) is None
    assert slice_stack("coherent", 3, 4.0).positions == (0.0, 4.0, 8.0)
    with pytest.raises(ValueError, match="unknown slices"):
        slice_stack("smooth", 3, 4.0)


def test_roughness_of_known_fields():
    ddf = torch.zeros(1, 3, 6, 8, 8)
    ddf[:, 2] = torch.arange(8.0).reshape(1, 1, 8) * 0.5  # x-displacement grows 0.5 voxel per x voxel
    ddf[:, 1] += torch.arange(6.0).reshape(6, 1, 1) * 2.0  # y-displacement grows 2 voxels per slice
    out = through_plane_roughness(ddf, (4.0, 1.0, 1.0), slice_axis=0)
    assert out["through_plane_mm_per_mm"] == pytest.approx(2.0 * 1.0 / 4.0)
    assert out["in_plane_mm_per_mm"] == pytest.approx((0.0 + 0.5) / 2)
    assert out["through_plane_roughness_ratio"] == pytest.approx(0.5 / 0.25)


def test_coherent_draw_keeps_the_2d_random_field_statistics():
    """Per-slice |u| of random-field-2d on a volume (coherent) against 2D draws of the same process."""
    process = ForwardProcess.from_preset("cmr-2d")
    stack = SliceStack.regular(24, 2.0)  # slices 2 working voxels apart; control cells 2 to 16 voxels
    volume = process.sample(48, 64, batch=24, generator=torch.Generator().manual_seed(0), diffeomorphic=True,
                            target=False, stack=stack)[0]
    single = process.sample(48, 64, batch=24, generator=torch.Generator().manual_seed(0), diffeomorphic=True,
                            target=False)[0]
    mean_volume = volume.norm(dim=1).mean().item()
    mean_single = single.norm(dim=1).mean().item()
    assert 0.7 < mean_volume / mean_single < 1.4  # one coherent draw vs 24 independent ones
    neighbours = (volume[1:] - volume[:-1]).norm(dim=1).mean() / volume.norm(dim=1).mean()
    independent = (single[1:] - single[:-1]).norm(dim=1).mean() / single.norm(dim=1).mean()
    assert neighbours < 0.4 * independent  # measured 0.28-0.31 vs 1.40-1.43 over seeds 0-2


@pytest.mark.parametrize("name", ["random-field-2d"])
def test_volume_is_smooth_through_the_slices_by_default(name, tmp_path):
    image = near_isotropic_volume()
    model = random_field_model(name)
    results = {}
    for slices in ("coherent", "independent"):
        result = deform_image(model, image, settings=DeformationSettings(level=48, seed=4, slices=slices))
        results[slices] = result
        assert result.statistics["slices"] == slices
        assert float(result.ddf[0, 0].abs().max()) == 0.0  # through-plane displacement stays zero (slice axis z)
        det = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(
            _axis_aligned(result.field)))
        assert det.min() > 0  # no folding by a 3D det J
    coherent = results["coherent"].statistics
    independent = results["independent"].statistics
    assert coherent["through_plane_roughness_ratio"] <= 1.5 < 3 < independent["through_plane_roughness_ratio"]
    assert 0.6 < coherent["mean_mm"] / independent["mean_mm"] < 1.6
    default = deform_image(model, image, settings=DeformationSettings(level=48, seed=4))
    assert torch.equal(default.ddf, results["coherent"].ddf)
    json.dumps(coherent)  # stats.json-ready


def _axis_aligned(field: sitk.Image) -> sitk.Image:
    """The field with an identity direction: SimpleITK's det J ignores the direction, and the field's vectors
    are rotated with it, so the determinant is the same as in the oblique frame."""
    copy = sitk.Image(field)
    array = sitk.GetArrayFromImage(field)
    direction = np.array(field.GetDirection()).reshape(3, 3)
    rotated = array @ direction  # LPS vectors -> index-axis vectors (times spacing)
    copy = sitk.GetImageFromArray(rotated, isVector=True)
    copy.SetSpacing(field.GetSpacing())
    return copy


def test_learned_recovery_on_a_volume_is_coherent():
    """A 2D network (zero output: the recovery loop, halvings and composition run) keeps coherent noise coherent."""
    image = near_isotropic_volume(slices=8, size=32, oblique=False)
    model = field_only_model(2, 32, seed=1)
    result = deform_image(model, image, settings=DeformationSettings(level=48, seed=0, speed="faster"))
    assert result.statistics["through_plane_roughness_ratio"] < 1.5
    assert result.statistics["folding_fraction"] == 0.0


def test_2d_images_ignore_slices():
    array = near_isotropic_volume(slices=1, size=32, oblique=False)
    image = sitk.GetImageFromArray(sitk.GetArrayFromImage(array)[0])
    model = random_field_model("random-field-2d")
    a = deform_image(model, image, settings=DeformationSettings(level=40, seed=2, slices="coherent"))
    b = deform_image(model, image, settings=DeformationSettings(level=40, seed=2, slices="independent"))
    assert torch.equal(a.ddf, b.ddf) and "slices" not in a.statistics


def test_unknown_slices_is_a_clear_error():
    from drdm.errors import DRDMError

    with pytest.raises(DRDMError, match="^unknown slices 'smooth'; choose one of coherent, independent$"):
        deform_image(random_field_model("random-field-2d"), near_isotropic_volume(slices=4, size=16),
            settings=DeformationSettings(level=10, seed=0, slices="smooth"))


def test_qa_shows_a_through_plane_reslice():
    assert central_views((10, 64, 60), slice_axis=0) == [(0, 5), (1, 32)]
    assert central_views((64, 60, 10), slice_axis=2) == [(2, 5), (0, 32)]
    assert central_views((10, 64, 60), slice_axis=None) == [(0, 5), (1, 32), (2, 30)]
    assert central_views((64, 60), slice_axis=None) == [(None, 0)]
