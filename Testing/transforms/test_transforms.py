"""drdm.transforms: the MONAI dictionary transform and the TorchIO transform, run for real."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import field_only_model
from drdm.settings import DeformationSettings
from drdm.training.phantoms import cardiac_phantom
from drdm.transforms import deform_channels_first


@pytest.fixture(scope="module")
def field_only():
    return field_only_model(2, 32)


@pytest.fixture(scope="module")
def sample():
    image, labels = cardiac_phantom(48, 2, seed=3)
    return image[0], labels[0]  # (1, 48, 48)


def test_core_warps_images_and_labels_consistently(field_only, sample):
    image, labels = sample
    images, moved_labels, ddf = deform_channels_first(field_only, image, (1.0, 1.0), DeformationSettings(level=79),
                                                      generator=torch.Generator().manual_seed(1),
                                                      images=[image], labels=[labels])
    assert ddf.shape == (2, 48, 48) and ddf.abs().max() > 0.5
    assert images[0].shape == image.shape and not torch.equal(images[0], image)
    assert set(torch.unique(moved_labels[0]).tolist()) <= set(torch.unique(labels).tolist())
    # the labels moved with the image: the bright LV cavity (label 3) stays bright
    assert images[0][moved_labels[0] == 3].mean() > 0.8


def test_monai_dictionary_transform(field_only, sample):
    monai = pytest.importorskip("monai")
    from drdm.transforms import RandDRDMDeformd
    from monai.data import MetaTensor

    image, labels = sample
    affine = torch.diag(torch.tensor([0.8, 1.2, 1.0, 1.0], dtype=torch.float64))
    data = {"image": MetaTensor(image, affine=affine), "label": MetaTensor(labels, affine=affine)}
    transform = RandDRDMDeformd(keys="image", label_keys="label", model=field_only, levels=(60, 79))
    pipeline = monai.transforms.Compose([transform])
    pipeline.set_random_state(seed=5)
    first = pipeline(dict(data))
    pipeline.set_random_state(seed=5)
    second = pipeline(dict(data))
    assert isinstance(first["image"], MetaTensor) and torch.equal(first["image"].affine, affine)
    assert torch.equal(first["image"], second["image"]) and torch.equal(first["label"], second["label"])
    assert not torch.equal(first["image"].as_tensor(), image)
    assert set(torch.unique(first["label"]).tolist()) <= {0, 1, 2, 3}
    never = RandDRDMDeformd(keys="image", label_keys="label", model=field_only, prob=0.0)
    assert torch.equal(never(dict(data))["image"], data["image"])


def test_torchio_transform(field_only, sample):
    tio = pytest.importorskip("torchio")
    from drdm.transforms import RandomDRDMDeformation

    image, labels = sample
    subject = tio.Subject(t1=tio.ScalarImage(tensor=image.unsqueeze(-1)), seg=tio.LabelMap(tensor=labels.unsqueeze(-1)))
    transform = tio.Compose([RandomDRDMDeformation(field_only, levels=(79,))])
    torch.manual_seed(0)
    out = transform(subject)
    torch.manual_seed(0)
    again = transform(subject)
    assert out.t1.data.shape == (1, 48, 48, 1)
    assert not torch.equal(out.t1.data, subject.t1.data)
    assert torch.equal(out.t1.data, again.t1.data)
    values = set(np.unique(out.seg.data.numpy()).tolist())
    assert values <= {0, 1, 2, 3} and 3 in values
    assert out.get_composed_history() is not None


# -- replay: the random transforms draw, the deterministic ones reproduce ---------------------------------------


def test_torchio_history_replays_the_sample_bit_for_bit(field_only, sample):
    tio = pytest.importorskip("torchio")
    from drdm.transforms import DRDMDeformation, RandomDRDMDeformation

    image, labels = sample
    subject = tio.Subject(t1=tio.ScalarImage(tensor=image.unsqueeze(-1)), seg=tio.LabelMap(tensor=labels.unsqueeze(-1)))
    pipeline = tio.Compose([tio.RandomFlip(axes=(0, 1), flip_probability=0.5),
                            RandomDRDMDeformation(field_only, levels=(60, 79))])
    torch.manual_seed(3)
    out = pipeline(subject)
    name, arguments = out.applied_transforms[-1]
    assert name == "DRDMDeformation" and arguments["level"] in (60, 79) and 0 <= arguments["seed"] < 2**31
    assert arguments["model"] is field_only
    torch.manual_seed(4)  # the global generator no longer matters: the history holds every parameter
    again = out.get_composed_history()(subject)
    assert torch.equal(again.t1.data, out.t1.data) and torch.equal(again.seg.data, out.seg.data)
    alone = DRDMDeformation(**arguments)(subject)  # the DRDM step on its own, from its recorded arguments
    assert not torch.equal(alone.t1.data, subject.t1.data)
    # the record holds the field it applied; the parameters alone (no field) compute the very same one
    assert arguments["field"].shape == (3, 48, 48, 1)
    recomputed = DRDMDeformation(**dict(arguments, field=None))(subject)
    assert torch.equal(recomputed.t1.data, alone.t1.data) and torch.equal(recomputed.seg.data, alone.seg.data)
    other = DRDMDeformation(**dict(arguments, seed=arguments["seed"] + 1, field=None))(subject)
    assert not torch.equal(other.t1.data, alone.t1.data)
    assert f"seed={arguments['seed']}" in repr(out.history[-1]) and "network" not in repr(out.history[-1])


def test_torchio_draws_the_model_and_records_it(sample):
    tio = pytest.importorskip("torchio")
    from drdm.transforms import RandomDRDMDeformation

    models = [field_only_model(2, 32, seed=s) for s in (1, 2)]
    for model, name in zip(models, ("first", "second")):
        model.name = name
    image, _ = sample
    subject = tio.Subject(t1=tio.ScalarImage(tensor=image.unsqueeze(-1)))
    transform = RandomDRDMDeformation(models, levels=(79,))
    torch.manual_seed(0)
    drawn = {transform(subject).applied_transforms[-1][1]["model"].name for _ in range(8)}
    assert drawn == {"first", "second"}


def test_monai_applied_operations_replay_the_sample_bit_for_bit(field_only, sample):
    pytest.importorskip("monai")
    from drdm.transforms import DRDMDeformd, RandDRDMDeformd
    from monai.data import MetaTensor

    image, labels = sample
    affine = torch.diag(torch.tensor([0.8, 1.2, 1.0, 1.0], dtype=torch.float64))
    data = {"image": MetaTensor(image, affine=affine), "label": MetaTensor(labels, affine=affine)}
    transform = RandDRDMDeformd(keys="image", label_keys="label", model=field_only, levels=(60, 79))
    transform.set_random_state(seed=11)
    out = transform(dict(data))
    (operation,) = out["image"].applied_operations
    assert out["label"].applied_operations[-1]["extra_info"] == operation["extra_info"]
    record = operation["extra_info"]
    assert operation["class"] == "DRDMDeformd" and record["level"] in (60, 79) and record["model"] == field_only.name
    replay = DRDMDeformd.from_operation(operation, "image", field_only, label_keys="label")
    again = replay(dict(data))
    assert torch.equal(again["image"], out["image"]) and torch.equal(again["label"], out["label"])
    assert not torch.equal(out["image"].as_tensor(), image)
    impostor = field_only_model(2, 32, seed=9)
    impostor.name = "another"
    with pytest.raises(ValueError, match="made with model"):
        DRDMDeformd.from_operation(operation, "image", impostor)


def test_monai_keeps_earlier_operations(field_only, sample):
    monai = pytest.importorskip("monai")
    from drdm.transforms import RandDRDMDeformd
    from monai.data import MetaTensor

    image, _ = sample
    pipeline = monai.transforms.Compose([monai.transforms.Flipd(keys="image", spatial_axis=0),
                                         RandDRDMDeformd(keys="image", model=field_only, levels=(79,))])
    out = pipeline({"image": MetaTensor(image)})
    assert [op["class"] for op in out["image"].applied_operations] == ["Flip", "DRDMDeformd"]
