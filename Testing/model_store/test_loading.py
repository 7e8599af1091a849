"""drdm.model_store.loading: load_model (names, files, loaded models) and load_for_image, the one call of every front
end for ``--model auto``."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from drdm.model_store.choice import ModelChoice
from drdm.model_store.loading import load_for_image, load_model
from drdm.models import DRDMModel, untrained_model


def image(shape: tuple[int, ...], spacing: tuple[float, ...]) -> sitk.Image:
    out = sitk.GetImageFromArray(np.random.default_rng(0).uniform(0, 600, size=shape).astype(np.float32))
    out.SetSpacing(spacing)
    return out


pytestmark = pytest.mark.usefixtures("empty_cache")  # conftest: no downloaded model


def test_auto_on_a_2d_image_loads_cmr_2d_with_the_reason():
    model, choice = load_for_image("auto", image((64, 64), (1.0, 1.0)), "cpu")
    assert isinstance(model, DRDMModel) and model.name == "cmr-2d" and model.ndims == 2 and model.learned
    assert choice == ModelChoice("cmr-2d", "2D image") and choice.line(model.name) == "model: cmr-2d (auto: 2D image)"
    assert load_for_image(None, lambda: image((64, 64), (1.0, 1.0)), "cpu")[1].spec == "cmr-2d"  # None is auto


def test_auto_on_a_volume_reads_the_image_and_explains():
    model, choice = load_for_image("auto", lambda: image((12, 24, 24), (1.2, 1.2, 1.2)), "cpu")
    assert model.name == "random-field-3d" and not model.learned and "near-isotropic" in choice.reason


def test_an_explicit_model_is_obeyed_without_reading_the_image():
    def unread():
        raise AssertionError("the image is read only for auto")

    model, choice = load_for_image("random-field-2d", unread, "cpu")
    assert model.name == "random-field-2d" and choice == ModelChoice("random-field-2d")
    assert choice.line(model.name) == "model: random-field-2d"


def test_a_loaded_model_is_moved_and_named(monkeypatch):
    monkeypatch.setenv("DRDM_MODEL", "random-field-3d")  # a standing choice does not replace a loaded model
    loaded = untrained_model(2, size=32)
    model, choice = load_for_image(loaded, None, "cpu")
    assert model is loaded and choice == ModelChoice("untrained-2d") and str(model.device) == "cpu"


def test_the_environment_choice_is_auto_and_load_model_is_the_same_loader(monkeypatch):
    monkeypatch.setenv("DRDM_MODEL", "random-field-3d")
    model, choice = load_for_image("auto", image((64, 64), (1.0, 1.0)), "cpu")
    assert model.name == "random-field-3d" and choice.reason == "$DRDM_MODEL"
    assert load_model(None, "cpu").name == "random-field-3d"


def test_an_unknown_model_is_one_line_for_the_user():
    with pytest.raises(ValueError, match="no such file"):
        load_for_image("no-such-model", None, "cpu")
