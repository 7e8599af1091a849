"""Full-resolution work in slabs (CT-sized volumes): every chunked path equals the one-piece computation."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from drdm.field_statistics import displacement_statistics
from drdm.physical.deform import estimate_memory_bytes, resample_in_slabs
from drdm.physical.geometry import plan_working_grid
from drdm.physical.io import displacement_image, displacement_transform
from drdm.spatial import jacobian_determinant, jacobian_determinant_slabs


def _oblique_volume() -> sitk.Image:
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((23, 31, 29)).astype(np.float32))
    image.SetSpacing((1.1, 0.8, 2.5))
    image.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, -1))
    image.SetOrigin((3, 4, 5))
    return image


@pytest.mark.parametrize("interpolator", [sitk.sitkLinear, sitk.sitkNearestNeighbor, sitk.sitkBSpline])
def test_resample_in_slabs_equals_one_resample(interpolator):
    image = _oblique_volume()
    ddf = torch.randn(1, 3, 23, 31, 29, generator=torch.Generator().manual_seed(0)) * 2
    transform = displacement_transform(displacement_image(ddf, image))
    whole = sitk.Resample(image, image, transform, interpolator, 0.0, image.GetPixelID())
    slabs = resample_in_slabs(image, transform, interpolator, 0.0, slab_voxels=1000)  # 2 planes per slab
    assert np.array_equal(sitk.GetArrayViewFromImage(whole), sitk.GetArrayViewFromImage(slabs))
    assert slabs.GetOrigin() == image.GetOrigin() and slabs.GetDirection() == image.GetDirection()


@pytest.mark.parametrize("shape", [(1, 3, 40, 11, 9), (1, 2, 37, 20), (2, 3, 19, 5, 6)])
def test_jacobian_in_slabs_equals_whole(shape):
    ddf = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    whole = jacobian_determinant(ddf)
    assert torch.equal(jacobian_determinant_slabs(ddf, slab=4, dtype=torch.float64), whole)
    assert jacobian_determinant_slabs(ddf).dtype == torch.float32


@pytest.mark.parametrize("case", [((30, 41, 27), (2.5, 0.9, 1.1), 3), ((7, 50, 44), (8.0, 1.2, 1.3), 2),
                                  ((50, 44), (1.2, 1.3), 2)])
def test_field_to_original_in_chunks_equals_one_chunk(case):
    shape, spacing, ndims = case
    grid = plan_working_grid(shape, spacing, ndims, 32)
    field = torch.randn((grid.batch, ndims) + (32,) * ndims, generator=torch.Generator().manual_seed(2))
    whole = grid.field_to_original(field, chunk_voxels=1 << 30)
    for chunk in (1000, 1):
        assert torch.equal(grid.field_to_original(field, chunk_voxels=chunk), whole)


def test_displacement_statistics_match_numpy():
    ddf = torch.randn(1, 3, 9, 8, 7, generator=torch.Generator().manual_seed(3))
    stats = displacement_statistics(ddf, (2.0, 1.0, 0.5))
    magnitude = np.sqrt((ddf[0].double().numpy() ** 2).sum(0))
    assert stats["p95_vox"][0] == pytest.approx(np.percentile(magnitude, 95), rel=1e-12)
    scaled = ddf[0].double().numpy() * np.array([2.0, 1.0, 0.5])[:, None, None, None]
    assert stats["p95_mm"][0] == pytest.approx(np.percentile(np.sqrt((scaled**2).sum(0)), 95), rel=1e-12)


def test_ct_sized_estimate_fits_the_machine_class():
    """512×512×300 with a 3D model must be estimated below 24 GB (benchmarks/big_volume.py measures it)."""
    grid = plan_working_grid((300, 512, 512), (1.0, 0.7, 0.7), 3, 128)
    assert estimate_memory_bytes(grid) < 24e9
