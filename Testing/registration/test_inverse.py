"""The inverse field (``drdm.registration.inverse``; ``--inverse`` of ``generate`` and ``synthesize``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from drdm.cli import main
from drdm.registration.inverse import inverse_consistency, invert_displacement, maps_inside


def smooth_field(shape: tuple[int, ...], amplitude: float) -> torch.Tensor:
    axes = torch.meshgrid(*[torch.linspace(0, torch.pi, n, dtype=torch.float64) for n in shape], indexing="ij")
    channels = [amplitude * torch.sin(axes[(k + 1) % len(shape)]) * torch.sin(axes[k]) for k in range(len(shape))]
    return torch.stack(channels)[None]


def test_constant_shift_inverts_exactly():
    ddf = torch.zeros(1, 2, 12, 10, dtype=torch.float64)
    ddf[:, 0] = 0.75
    inverse = invert_displacement(ddf)
    inside = maps_inside(inverse)[0]
    assert torch.allclose(inverse[0, :, inside], -ddf[0, :, inside], atol=1e-9)


def test_smooth_field_inverse_is_consistent_both_ways():
    ddf = smooth_field((24, 20, 16), 3.0)  # voxels; |grad u| < 1: a diffeomorphism
    inverse = invert_displacement(ddf)
    stats = inverse_consistency(ddf, inverse, (2.0, 1.0, 1.5))
    assert stats["inverse_consistency_p95_mm"] < 1e-3 and stats["inverse_consistency_max_mm"] < 1e-2
    largest_mm = float((ddf * torch.tensor([2.0, 1.0, 1.5]).reshape(1, 3, 1, 1, 1)).pow(2).sum(1).sqrt().max())
    # the other way, v is interpolated between voxels: a few % of the largest displacement
    assert stats["inverse_consistency_reverse_p95_mm"] < 0.03 * largest_mm
    assert stats["inverse_inside_percent"] > 90
    negated = inverse_consistency(ddf, -ddf, (2.0, 1.0, 1.5))  # the usual shortcut is measurably worse
    assert negated["inverse_consistency_p95_mm"] > 20 * stats["inverse_consistency_p95_mm"]
    assert negated["inverse_consistency_reverse_p95_mm"] > 3 * stats["inverse_consistency_reverse_p95_mm"]


def write_inputs(tmp_path):
    labels = np.zeros((40, 48), dtype=np.uint8)
    labels[10:30, 12:36] = 3
    image = sitk.GetImageFromArray((100.0 * (labels > 0) + 20 * np.sin(np.arange(48) / 3)[None, :]).astype(np.float32))
    image.SetSpacing((1.2, 0.9))
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(image)
    sitk.WriteImage(image, str(tmp_path / "v.nii.gz"))
    sitk.WriteImage(label_image, str(tmp_path / "v_gt.nii.gz"))
    return image


def test_generate_writes_the_inverse_that_undoes_the_deformation(tmp_path):
    image = write_inputs(tmp_path)
    assert main(["generate", str(tmp_path / "v.nii.gz"), "--model", "random-field-2d", "--seed", "0", "--inverse",
                 "--out", str(tmp_path / "out")]) == 0
    folder = next((tmp_path / "out").iterdir())
    stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
    assert stats["inverse_consistency_p95_mm"] < 0.05 and stats["inverse_mean_mm"] > 1.0
    deformed = sitk.ReadImage(str(folder / "image.nii.gz"))
    inverse = sitk.ReadTransform(str(folder / "transform_inverse.h5"))
    back = sitk.GetArrayFromImage(sitk.Resample(deformed, image, inverse, sitk.sitkLinear))
    original, moved = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(deformed)
    inner = (slice(6, -6), slice(6, -6))
    assert np.abs(back - original)[inner].mean() < 0.3 * np.abs(moved - original)[inner].mean()


def test_synthesize_writes_the_ground_truth_inverse_and_reference_mode_refuses(tmp_path, capsys):
    write_inputs(tmp_path)
    base = ["synthesize", str(tmp_path / "v.nii.gz"), "--labels", str(tmp_path / "v_gt.nii.gz"), "--model",
            "random-field-2d", "--seed", "2", "--inverse"]
    assert main(base + ["--out", str(tmp_path / "pairs")]) == 0
    folder = next((tmp_path / "pairs").iterdir())
    truth = json.loads((folder / "stats.json").read_text(encoding="utf-8"))["ground_truth"]
    assert truth["inverse_consistency_p95_mm"] < 0.05 and (folder / "transform_inverse.h5").is_file()
    assert main(base + ["--mode", "reference", "--out", str(tmp_path / "ref")]) == 2
    assert "--inverse needs --mode diffeomorphic" in capsys.readouterr().err and not (tmp_path / "ref").exists()


@pytest.mark.parametrize("shape", [(16, 18), (10, 12, 8)])
def test_maps_inside_marks_points_leaving_the_grid(shape):
    ddf = torch.zeros((1, len(shape)) + shape, dtype=torch.float64)
    ddf[:, -1] = 2.0
    inside = maps_inside(ddf)[0]
    assert inside[..., : shape[-1] - 2].all() and not inside[..., shape[-1] - 2:].any()
