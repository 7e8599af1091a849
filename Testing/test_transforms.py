"""drdm.transforms: the MONAI dictionary transform and the TorchIO transform, run for real."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import field_only_model
from drdm.phantoms import cardiac_phantom
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
    images, moved_labels, ddf = deform_channels_first(field_only, image, (1.0, 1.0), level=79,
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
