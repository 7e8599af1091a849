"""Steering a deformation: a size in mm, structures kept still or alone deformed (drdm.physical.steering)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import field_only_model
from drdm.cli import main
from drdm.physical.deform import deform_image
from drdm.physical.steering import SteeringError
from drdm.sampler import generate
from drdm.settings import DeformationSettings  # noqa: E402


def _disc_image(shape: tuple[int, ...], spacing: float, centre_shift: int = 0) -> tuple[sitk.Image, sitk.Image]:
    """A textured image with two label discs (1: left, 2: right); 2D or 3D, isotropic spacing."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    centre = [n / 2 for n in shape]
    labels = np.zeros(shape, np.uint8)
    left = sum((g - c + (shape[-1] // 5 if i == len(shape) - 1 else 0)) ** 2 for i, (g, c) in enumerate(zip(grids, centre)))
    right = sum((g - c - (shape[-1] // 5 if i == len(shape) - 1 else 0)) ** 2 for i, (g, c) in enumerate(zip(grids, centre)))
    radius = (min(shape[-2:]) / 8) ** 2
    labels[left < radius] = 1
    labels[right < radius] = 2
    texture = np.sin(grids[-1] / 3.0) * np.cos(grids[-2] / 4.0)
    image = sitk.GetImageFromArray((100 + 40 * texture + 60 * labels).astype(np.float32))
    label_image = sitk.GetImageFromArray(labels)
    for item in (image, label_image):
        item.SetSpacing((spacing,) * len(shape))
    return image, label_image


def _magnitude_mm(result) -> np.ndarray:
    field = sitk.GetArrayFromImage(result.field)  # LPS mm vectors
    return np.sqrt((field.astype(np.float64) ** 2).sum(-1))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


def test_recording_the_path_changes_nothing_and_replays_the_field(cmr):
    image = torch.rand(1, 1, 256, 256, generator=torch.Generator().manual_seed(0))
    plain = generate(cmr, image, start_level=48, generator=torch.Generator().manual_seed(3), mode="diffeomorphic",
                     speed="faster")
    recorded = generate(cmr, image, start_level=48, generator=torch.Generator().manual_seed(3), mode="diffeomorphic",
                        speed="faster", record_path=True)
    assert torch.equal(plain.ddf, recorded.ddf)
    assert len(recorded.path.velocities) == 1 + len(recorded.levels)
    assert float((recorded.path.field() - recorded.ddf).abs().max()) < 1e-3
    with pytest.raises(ValueError, match="diffeomorphic"):
        generate(cmr, image, speed="faithful", start_level=48, mode="reference", record_path=True)


@pytest.mark.parametrize("seed", [1, 2])
def test_size_is_reached_keeps_the_shape_and_never_folds(cmr, seed):
    image, labels = _disc_image((112, 112), 1.8)
    own = deform_image(cmr, image, labels, settings=DeformationSettings(level=48, seed=seed, speed="faster"))
    natural = own.statistics["mean_mm"]
    fields = {}
    for size in (0.5, 3.0, 1.2 * natural):
        result = deform_image(cmr, image, labels, settings=DeformationSettings(level=48, seed=seed, speed="faster", magnitude=size))
        stats = result.statistics
        assert abs(stats["mean_mm"] - size) <= 0.1 * size, (size, stats["mean_mm"])
        assert abs(stats["mean_mm"] - size) <= 0.025 * size  # the search stops within 2 %
        assert stats["magnitude_mm"] == pytest.approx(size)
        assert stats["natural_mm"] == pytest.approx(natural, rel=1e-6)
        assert stats["folding_fraction"] == 0.0 and stats["det_min"] > 0
        fields[size] = result.ddf
    for size, field in fields.items():
        assert _cosine(field, own.ddf) > 0.9, size  # one shape, another amount
    assert own.statistics.get("magnitude_mm") is None and "size_scale" not in own.statistics  # untouched without a size


def test_size_on_a_stack_with_coherent_slices_and_with_a_3d_model():
    stack, _ = _disc_image((6, 48, 48), 1.0)
    stack.SetSpacing((1.0, 1.0, 6.0))
    model2d = field_only_model(2, 64)
    own = deform_image(model2d, stack, settings=DeformationSettings(level=40, seed=0))
    result = deform_image(model2d, stack, settings=DeformationSettings(level=40, seed=0, magnitude=0.5 * own.statistics["mean_mm"]))
    assert result.statistics["mean_mm"] == pytest.approx(0.5 * own.statistics["mean_mm"], rel=0.05)
    assert result.statistics["through_plane_roughness_ratio"] < 2.0  # still one smooth field through the slices
    assert _cosine(result.ddf, own.ddf) > 0.95

    volume, _ = _disc_image((24, 24, 24), 2.0)
    model3d = field_only_model(3, 32)
    own3 = deform_image(model3d, volume, settings=DeformationSettings(level=60, seed=1))
    target = 1.3 * own3.statistics["mean_mm"]
    result3 = deform_image(model3d, volume, settings=DeformationSettings(level=60, seed=1, magnitude=target))
    assert result3.statistics["mean_mm"] == pytest.approx(target, rel=0.05)
    assert result3.statistics["folding_fraction"] == 0.0
    assert _cosine(result3.ddf, own3.ddf) > 0.95


def test_kept_structures_do_not_move_and_the_rest_keeps_its_size(cmr):
    image, labels = _disc_image((112, 112), 1.8)
    own = deform_image(cmr, image, labels, settings=DeformationSettings(level=48, seed=4, speed="faster"))
    kept = deform_image(cmr, image, labels, settings=DeformationSettings(level=48, seed=4, speed="faster", keep=[1]))
    label_array = sitk.GetArrayFromImage(labels)
    inside = label_array == 1
    assert _magnitude_mm(kept)[inside].max() <= 0.1
    assert kept.statistics["max_mm_in_kept"] <= 0.1
    assert kept.statistics["folding_fraction"] == 0.0
    from scipy.ndimage import distance_transform_edt

    far = distance_transform_edt(~inside, sampling=1.8) > 40
    ratio = _magnitude_mm(kept)[far].mean() / _magnitude_mm(own)[far].mean()
    assert ratio > 0.7, ratio  # no global shrink away from the kept structure
    # the label of a kept structure is unchanged by the deformation
    assert np.array_equal(sitk.GetArrayFromImage(kept.labels) == 1, inside)


def test_only_region_deforms_and_the_size_refers_to_it(cmr):
    image, labels = _disc_image((112, 112), 1.8)
    result = deform_image(cmr, image, labels, settings=DeformationSettings(level=48, seed=5, speed="faster", only=[2],
        margin=12.0, magnitude=2.0))
    stats = result.statistics
    label_array = sitk.GetArrayFromImage(labels)
    from scipy.ndimage import distance_transform_edt

    distance = distance_transform_edt(label_array != 2, sampling=1.8)
    magnitude = _magnitude_mm(result)
    assert magnitude[distance >= 12.0].max() <= 0.1
    assert stats["max_mm_outside_region"] <= 0.1
    assert magnitude[distance < 12.0].mean() == pytest.approx(2.0, rel=0.1)
    assert stats["size_reached_mm"] == pytest.approx(2.0, rel=0.025)
    assert stats["only"] == [2] and stats["margin_mm"] == 12.0 and stats["folding_fraction"] == 0.0


def test_regions_work_on_a_stack_and_in_3d():
    stack, stack_labels = _disc_image((6, 48, 48), 1.0)
    for item in (stack, stack_labels):
        item.SetSpacing((1.0, 1.0, 6.0))
    result = deform_image(field_only_model(2, 64), stack, stack_labels, settings=DeformationSettings(level=40, seed=0,
        keep=[1], margin=6.0))
    assert _magnitude_mm(result)[sitk.GetArrayFromImage(stack_labels) == 1].max() <= 0.1
    volume, volume_labels = _disc_image((24, 24, 24), 2.0)
    result3 = deform_image(field_only_model(3, 32), volume, volume_labels, settings=DeformationSettings(level=60, seed=1,
        only=[1], margin=8.0))
    from scipy.ndimage import distance_transform_edt

    distance = distance_transform_edt(sitk.GetArrayFromImage(volume_labels) != 1, sampling=2.0)
    assert _magnitude_mm(result3)[distance >= 8.0].max() <= 0.1
    assert result3.statistics["folding_fraction"] == 0.0


@pytest.mark.parametrize("options, message", [
    (dict(keep=[7]), "label 7 is not in the label map"),
    (dict(only=[1], keep=[1]), "both kept still and the only one"),
    (dict(keep=[1], margin=0.0), "margin must be a positive"),
    (dict(magnitude=-1.0), "size must be a positive"),
    (dict(magnitude=3.0, mode="reference"), "need mode 'diffeomorphic'"),
])
def test_bad_steering_is_one_clear_error(options, message):
    """Refused by the settings object (a size or margin that is not positive, regions in reference mode) or by the
    steering (labels), in one line either way."""
    from drdm.errors import DRDMError

    image, labels = _disc_image((48, 48), 2.0)
    with pytest.raises(DRDMError, match=message) as raised:
        deform_image(field_only_model(2, 64), image, labels, settings=DeformationSettings(level=40, seed=0, **options))
    assert "\n" not in str(raised.value)


def test_regions_need_labels_and_sizes_have_a_limit():
    image, _ = _disc_image((48, 48), 2.0)
    model = field_only_model(2, 64)
    with pytest.raises(SteeringError, match="needs a label map"):
        deform_image(model, image, None, settings=DeformationSettings(level=40, seed=0, keep=[1]))
    own = deform_image(model, image, settings=DeformationSettings(level=40, seed=0)).statistics["mean_mm"]
    with pytest.raises(SteeringError, match=r"beyond reach .* up to (\d+\.\d+) mm") as caught:
        deform_image(model, image, settings=DeformationSettings(level=40, seed=0, magnitude=3 * own))
    assert f"{1.5 * own:.2f}" in str(caught.value)


def test_cli_size_and_regions(tmp_path, capsys):
    image, labels = _disc_image((48, 48), 2.0)
    sitk.WriteImage(image, str(tmp_path / "case.nii.gz"))
    sitk.WriteImage(labels, str(tmp_path / "case_gt.nii.gz"))
    out = tmp_path / "out"
    assert main(["generate", str(tmp_path / "case.nii.gz"), "--labels", str(tmp_path / "case_gt.nii.gz"),
                 "--model", "random-field-2d", "--seed", "2", "--magnitude", "1.5", "--keep", "1", "--out",
                 str(out)]) == 0
    stats = json.loads((out / "case_1.5mm_seed2" / "stats.json").read_text())
    assert stats["magnitude_mm"] == 1.5 and stats["keep"] == [1]
    assert stats["size_reached_mm"] == pytest.approx(1.5, rel=0.025) and stats["max_mm_in_kept"] <= 0.1
    assert "kept structures move at most" in capsys.readouterr().out

    bad = tmp_path / "bad"
    code = main(["generate", str(tmp_path / "case.nii.gz"), "--labels", str(tmp_path / "case_gt.nii.gz"),
                 "--model", "random-field-2d", "--only", "9", "--out", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [err[0]] and err[0].startswith("drdm: error: label 9 is not in the label map")
    assert not bad.exists() or not any(bad.iterdir())

    augmented = tmp_path / "augmented"
    assert main(["augment", str(tmp_path), "--label-suffix", "_gt", "--model", "random-field-2d", "--magnitudes",
                 "1", "2", "--no-qa", "--out", str(augmented)]) == 0
    manifest = (augmented / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 3 and manifest[0].endswith("magnitude_mm")
    sizes = sorted(json.loads(p.read_text())["mean_mm"] for p in augmented.glob("*/stats.json"))
    assert sizes == pytest.approx([1.0, 2.0], rel=0.025)
    with pytest.raises(SystemExit):
        main(["augment", str(tmp_path), "--model", "random-field-2d", "--magnitudes", "1", "--levels", "40",
              "--out", str(tmp_path / "x")])
