"""drdm.transforms: the size in mm and the regions, and the inverse (TorchIO's apply_inverse_transform, MONAI's
Compose.inverse and Invertd) that test-time augmentation needs."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import field_only_model
from drdm.errors import DRDMError
from drdm.training.phantoms import cardiac_phantom

LABELS = (1, 2, 3)  # the phantom's structures (3: the bright cavity)
SPACING = (0.8, 1.2)  # mm, (x, y): anisotropic on purpose


def dice(a: torch.Tensor, b: torch.Tensor, value: int) -> float:
    a, b = a == value, b == value
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def mean_mm(field: torch.Tensor, spacing: tuple[float, ...]) -> float:
    """Mean |u| in mm of a ``(ndim, *spatial)`` voxel field."""
    scale = torch.tensor(spacing, dtype=torch.float64).reshape((-1,) + (1,) * (field.dim() - 1))
    return float((field.double() * scale).pow(2).sum(0).sqrt().mean())


@pytest.fixture(scope="module")
def field_only():
    return field_only_model(2, 32)


@pytest.fixture(scope="module")
def phantom():
    image, labels = cardiac_phantom(64, 2, seed=3)
    return image[0], labels[0]  # (1, 64, 64), values in [0, 1] and 0..3


def _subject(tio, image: torch.Tensor, labels: torch.Tensor, spacing=(1.0, 1.0)):
    affine = torch.diag(torch.tensor([*spacing, 1.0, 1.0], dtype=torch.float64)).numpy()
    return tio.Subject(t1=tio.ScalarImage(tensor=image.unsqueeze(-1), affine=affine),
                       seg=tio.LabelMap(tensor=labels.unsqueeze(-1), affine=affine))


def _monai_data(image: torch.Tensor, labels: torch.Tensor) -> dict:
    from monai.data import MetaTensor

    affine = torch.diag(torch.tensor([*SPACING, 1.0, 1.0], dtype=torch.float64))
    return {"image": MetaTensor(image, affine=affine), "label": MetaTensor(labels, affine=affine)}


def _check_round_trip(original_image, original_labels, deformed_labels, back_image, back_labels) -> dict:
    """Labels back with Dice >= 0.95 per label (they were clearly moved), images back within a bound."""
    moved = {v: dice(deformed_labels, original_labels, v) for v in LABELS}
    back = {v: dice(back_labels, original_labels, v) for v in LABELS}
    assert min(moved.values()) < 0.9, moved  # the deformation was large enough for the check to mean something
    assert min(back.values()) >= 0.95, back
    error = (back_image.float() - original_image.float()).abs()
    assert float(error.mean()) < 0.025 and float(error.quantile(0.9)) < 0.05  # images in [0, 1]
    assert set(torch.unique(back_labels).tolist()) <= {0, *LABELS}
    return back


# -- TorchIO -----------------------------------------------------------------------------------------------------


def test_torchio_inverse_brings_images_and_labels_back(field_only, phantom):
    tio = pytest.importorskip("torchio")
    from drdm.transforms import RandomDRDMDeformation

    image, labels = phantom
    subject = _subject(tio, image, labels)
    pipeline = tio.Compose([tio.RandomFlip(axes=(0,), flip_probability=1.0),
                            RandomDRDMDeformation(field_only, levels=(79,))])
    for seed in (0, 1):
        torch.manual_seed(seed)
        out = pipeline(subject)
        assert all(transform.is_invertible() for transform in out.get_composed_history().transforms)
        back = out.apply_inverse_transform()  # DRDM's inverse, then the flip's
        _check_round_trip(image, labels, out.seg.data[..., 0].flip(1), back.t1.data[..., 0], back.seg.data[..., 0])
        assert back.applied_transforms == [] and out.applied_transforms  # the deformed subject keeps its history


def test_torchio_inverse_of_a_learned_deformation(cmr):
    tio = pytest.importorskip("torchio")
    from drdm.transforms import RandomDRDMDeformation

    image, labels = cardiac_phantom(96, 2, seed=3)
    subject = _subject(tio, image[0], labels[0], spacing=(1.5, 1.5))
    torch.manual_seed(2)
    out = RandomDRDMDeformation(cmr, levels=(56,), speed="faster")(subject)
    back = out.apply_inverse_transform()
    _check_round_trip(image[0], labels[0], out.seg.data[..., 0], back.t1.data[..., 0], back.seg.data[..., 0])


def test_torchio_size_is_drawn_reached_recorded_and_replayed(field_only, phantom):
    tio = pytest.importorskip("torchio")
    from drdm.transforms import DRDMDeformation, RandomDRDMDeformation

    image, labels = phantom
    subject = _subject(tio, image, labels, spacing=SPACING)
    transform = RandomDRDMDeformation(field_only, levels=(79,), magnitudes=(1.0, 2.0))
    drawn = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        out = transform(subject)
        arguments = out.applied_transforms[-1][1]
        magnitude = arguments["magnitude"]
        assert 1.0 <= magnitude <= 2.0
        reached = mean_mm(arguments["field"][:2, ..., 0], SPACING)
        assert abs(reached - magnitude) <= 0.1 * magnitude, (reached, magnitude)
        drawn.append(magnitude)
        # the parameters alone (seed, level, drawn size: no stored field) reproduce the sample bit for bit
        replay = DRDMDeformation(**dict(arguments, field=None))(subject)
        assert torch.equal(replay.t1.data, out.t1.data) and torch.equal(replay.seg.data, out.seg.data)
        assert f"magnitude={magnitude:g}" in repr(out.history[-1])
    assert len(set(drawn)) == 2
    torch.manual_seed(0)
    plain = RandomDRDMDeformation(field_only, levels=(79,))(subject)
    assert plain.applied_transforms[-1][1]["magnitude"] is None
    with pytest.raises(ValueError, match="magnitudes"):
        RandomDRDMDeformation(field_only, magnitudes=(3.0, 1.0))


def test_torchio_regions_keep_a_structure_still(field_only, phantom):
    tio = pytest.importorskip("torchio")
    from drdm.transforms import DRDMDeformation

    image, labels = phantom
    subject = _subject(tio, image, labels)
    out = DRDMDeformation(field_only, seed=4, level=79, keep_labels=(3,), margin=4.0)(subject)
    field = out.applied_transforms[-1][1]["field"][:2, ..., 0]
    magnitude = (field.double() ** 2).sum(0).sqrt()
    assert float(magnitude[labels[0] == 3].max()) <= 0.1
    assert float(magnitude[labels[0] == 0].mean()) > 0.5
    assert out.applied_transforms[-1][1]["keep_labels"] == (3,)
    with pytest.raises(DRDMError, match="label 7 is not in the label map"):
        DRDMDeformation(field_only, seed=4, level=79, keep_labels=(7,))(subject)


def test_torchio_reference_mode_is_not_invertible(field_only, phantom):
    tio = pytest.importorskip("torchio")
    from drdm.transforms import DRDMDeformation

    image, labels = phantom
    subject = _subject(tio, image, labels)
    transform = DRDMDeformation(field_only, seed=1, level=79, mode="reference")
    assert not transform.is_invertible()
    with pytest.raises(DRDMError, match="not invertible"):
        transform.inverse()
    out = transform(subject)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        back = out.apply_inverse_transform()
    assert any("not invertible" in str(w.message) for w in caught)
    assert torch.equal(back.t1.data, out.t1.data)  # nothing undone, and TorchIO said so
    with pytest.raises(DRDMError, match="needs the field it applied"):
        DRDMDeformation(field_only, seed=1, level=79).inverse()  # no record: nothing to undo


# -- MONAI -------------------------------------------------------------------------------------------------------


def test_monai_compose_inverse_brings_images_and_labels_back(field_only, phantom):
    monai = pytest.importorskip("monai")
    from drdm.transforms import RandDRDMDeformd

    image, labels = phantom
    data = _monai_data(image, labels)
    pipeline = monai.transforms.Compose([
        monai.transforms.Flipd(keys=["image", "label"], spatial_axis=0),
        RandDRDMDeformd(keys="image", label_keys="label", model=field_only, levels=(79,))])
    for seed in (0, 1):
        pipeline.set_random_state(seed=seed)
        out = pipeline(dict(data))
        record = out["image"].applied_operations[-1]["extra_info"]
        assert record["field"].shape == (2, 64, 64)
        kept = [op["class"] for op in out["image"].applied_operations]
        back = pipeline.inverse(dict(out))
        assert [op["class"] for op in out["image"].applied_operations] == kept == ["Flip", "DRDMDeformd"]
        _check_round_trip(image, labels, out["label"].as_tensor().flip(1), back["image"].as_tensor(),
                          back["label"].as_tensor())
        assert back["image"].applied_operations == [] and back["label"].applied_operations == []


def test_monai_invertd_on_predictions_after_collation(field_only, phantom):
    monai = pytest.importorskip("monai")
    from drdm.transforms import RandDRDMDeformd
    from monai.data import decollate_batch, list_data_collate

    image, labels = phantom
    data = _monai_data(image, labels)
    pipeline = monai.transforms.Compose([RandDRDMDeformd(keys="image", label_keys="label", model=field_only,
                                                         levels=(79,))])
    pipeline.set_random_state(seed=7)
    batch = list_data_collate([pipeline(dict(data)) for _ in range(2)])
    batch["pred"] = (batch["image"] > 0.5).float()  # a "segmentation network": thresholding
    invert = monai.transforms.Invertd(keys="pred", transform=pipeline, orig_keys="image", nearest_interp=False)
    truth = (image > 0.5).long()
    seeds = set()
    for item in decollate_batch(batch):
        seeds.add(item["image"].applied_operations[-1]["extra_info"]["seed"])
        moved = dice((item["pred"] > 0.5).long(), truth, 1)
        back = invert(item)["pred"]
        assert back.shape == truth.shape and back.applied_operations == []
        assert moved < 0.93 and dice((back > 0.5).long(), truth, 1) >= 0.95  # a no-op inverse would fail
    assert len(seeds) == 2  # two different deformations, each undone with its own field


def test_monai_inverse_of_a_learned_deformation(cmr):
    monai = pytest.importorskip("monai")
    from drdm.transforms import RandDRDMDeformd

    image, labels = cardiac_phantom(96, 2, seed=3)
    data = _monai_data(image[0], labels[0])
    transform = RandDRDMDeformd(keys="image", label_keys="label", model=cmr, levels=(56,), speed="faster")
    pipeline = monai.transforms.Compose([transform])
    pipeline.set_random_state(seed=2)
    out = pipeline(dict(data))
    back = pipeline.inverse(dict(out))
    _check_round_trip(image[0], labels[0], out["label"].as_tensor(), back["image"].as_tensor(),
                      back["label"].as_tensor())


def test_monai_skipped_call_inverts_to_nothing(field_only, phantom):
    monai = pytest.importorskip("monai")
    from drdm.transforms import RandDRDMDeformd

    image, labels = phantom
    data = _monai_data(image, labels)
    never = RandDRDMDeformd(keys="image", label_keys="label", model=field_only, prob=0.0)
    pipeline = monai.transforms.Compose([monai.transforms.Flipd(keys="image", spatial_axis=0), never])
    out = pipeline(dict(data))
    assert [op["class"] for op in out["image"].applied_operations] == ["Flip", "RandDRDMDeformd"]
    assert out["image"].applied_operations[-1]["do_transforms"] is False
    assert data["image"].applied_operations == []  # the input's record is untouched
    back = pipeline.inverse(dict(out))
    assert torch.equal(back["image"].as_tensor(), image) and back["image"].applied_operations == []


def test_monai_size_is_drawn_reached_recorded_and_replayed(field_only, phantom):
    pytest.importorskip("monai")
    from drdm.transforms import DRDMDeformd, RandDRDMDeformd

    image, labels = phantom
    data = _monai_data(image, labels)
    transform = RandDRDMDeformd(keys="image", label_keys="label", model=field_only, levels=(79,),
                                magnitudes=(1.0, 2.0))
    drawn = []
    for seed in (0, 1):
        transform.set_random_state(seed=seed)
        out = transform(dict(data))
        operation = out["image"].applied_operations[-1]
        record = operation["extra_info"]
        assert 1.0 <= record["magnitude"] <= 2.0
        reached = mean_mm(record["field"], SPACING)
        assert abs(reached - record["magnitude"]) <= 0.1 * record["magnitude"], (reached, record["magnitude"])
        drawn.append(record["magnitude"])
        replay = DRDMDeformd.from_operation(operation, "image", field_only, label_keys="label")
        again = replay(dict(data))
        assert torch.equal(again["image"], out["image"]) and torch.equal(again["label"], out["label"])
    assert len(set(drawn)) == 2


def test_monai_regions_and_reference_mode(field_only, phantom):
    pytest.importorskip("monai")
    from drdm.transforms import DRDMDeformd

    image, labels = phantom
    data = _monai_data(image, labels)
    only = DRDMDeformd(keys="image", label_keys="label", model=field_only, seed=2, level=79, only_labels=(3,),
                       margin=15.0)
    field = only(dict(data))["image"].applied_operations[-1]["extra_info"]["field"]
    scale = torch.tensor(SPACING).reshape(2, 1, 1)
    magnitude = (field * scale).pow(2).sum(0).sqrt()
    beyond = torch.from_numpy(only_distance(labels[0], (3,), SPACING) >= 15.0)
    assert beyond.float().mean() > 0.3  # a good part of the image is held still
    assert float(magnitude[beyond].max()) <= 0.1 and float(magnitude[labels[0] == 3].mean()) > 0.3
    reference = DRDMDeformd(keys="image", label_keys="label", model=field_only, seed=2, level=79, mode="reference")
    out = reference(dict(data))
    assert "field" not in out["image"].applied_operations[-1]["extra_info"]
    with pytest.raises(DRDMError, match="not invertible") as caught:
        reference.inverse(dict(out))
    assert "\n" not in str(caught.value)


def only_distance(labels: torch.Tensor, values: tuple[int, ...], spacing: tuple[float, ...]):
    """Signed distance (mm) to the structures ``values`` of a nibabel-order (x, y) label map, same order."""
    from drdm.physical.steering import plan_regions

    regions = plan_regions(labels.T.numpy(), spacing[::-1], only=values, margin=1.0)
    return regions.only_distance.T
