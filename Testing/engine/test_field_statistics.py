"""drdm.field_statistics: displacement statistics in voxels, mm and % FOV; Jacobian statistics; Dice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from drdm import field_statistics as metrics
from drdm.registration.metrics import dice


def test_displacement_statistics_units():
    ddf = torch.zeros(2, 2, 10, 20)
    ddf[0, 0] = 3.0  # 3 voxels along axis 0
    ddf[1, 1] = 4.0  # 4 voxels along axis 1
    stats = metrics.displacement_statistics(ddf, spacing=(2.0, 0.5))
    assert stats["mean_vox"] == [3.0, 4.0] and stats["max_vox"] == [3.0, 4.0]
    assert stats["mean_mm"] == [6.0, 2.0]
    fov = (10 * 2.0 + 20 * 0.5) / 2
    assert np.allclose(stats["mean_percent_fov"], [100 * 6 / fov, 100 * 2 / fov])


def test_p95_matches_numpy():
    g = torch.Generator().manual_seed(0)
    ddf = torch.randn(1, 3, 7, 8, 9, generator=g)
    magnitude = ddf[0].double().pow(2).sum(0).sqrt().numpy()
    assert np.isclose(metrics.displacement_statistics(ddf)["p95_vox"][0], np.percentile(magnitude, 95))


def test_jacobian_statistics_of_scaling():
    grid = torch.stack(torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")).unsqueeze(0)
    ddf = torch.cat([0.2 * grid, -0.5 * grid])  # J = 1.2·I and 0.5·I everywhere
    stats = metrics.jacobian_statistics(ddf)
    assert np.allclose(stats["det_min"], [1.44, 0.25]) and np.allclose(stats["det_max"], [1.44, 0.25])
    assert stats["folding_fraction"] == [0.0, 0.0] and np.allclose(stats["log_det_std"], [0.0, 0.0], atol=1e-6)  # float32 input


def test_folding_statistics():
    ddf = torch.zeros(1, 2, 10, 10)
    ddf[0, 1, :, 5:] = -3.0  # a step pulls columns back over each other: folds at the step
    stats = metrics.jacobian_statistics(ddf)
    assert stats["folding_fraction"][0] > 0 and stats["det_min"][0] < 0
    assert stats["folding_fraction_interior"][0] > 0


def test_dice():
    a = torch.zeros(10, 10, dtype=torch.int64)
    b = torch.zeros(10, 10, dtype=torch.int64)
    a[:5] = 1
    b[:4] = 1
    a[6:, :] = 2
    assert dice(a, b) == {1: pytest.approx(2 * 40 / 90), 2: 0.0}
    assert dice(a, a, labels=[1, 2, 9]) == {1: 1.0, 2: 1.0, 9: 1.0}
    with pytest.raises(ValueError):
        dice(a, b[:5])


def test_spacing_length_checked():
    with pytest.raises(ValueError):
        metrics.displacement_statistics(torch.zeros(1, 2, 4, 4), spacing=(1.0, 1.0, 1.0))
