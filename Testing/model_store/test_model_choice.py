"""--model auto (drdm.model_store.choice): the model that fits the input, with its reason; explicit models obeyed."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from drdm.model_store.choice import choose_model, is_auto, resolve_model


def image(shape: tuple[int, ...], spacing: tuple[float, ...], low: float = 0.0, high: float = 600.0) -> sitk.Image:
    array = np.random.default_rng(0).uniform(low, high, size=shape).astype(np.float32)
    out = sitk.GetImageFromArray(array)
    out.SetSpacing(spacing)
    return out


pytestmark = pytest.mark.usefixtures("empty_cache")  # conftest: no downloaded model


def test_2d_and_thick_slices_get_the_cardiac_model():
    assert choose_model(image((64, 64), (1.0, 1.0))).spec == "cmr-2d"
    stack = choose_model(image((10, 64, 64), (1.5, 1.5, 10.0)))  # ITK spacing order (x, y, z)
    assert stack.spec == "cmr-2d" and "thick slices" in stack.reason
    assert choose_model(image((1, 64, 64), (1.0, 1.0, 1.0))).spec == "cmr-2d"  # one slice: a 2D image


def test_near_isotropic_volume_with_an_empty_cache_gets_the_random_field_and_says_how_to_fetch():
    choice = choose_model(image((40, 64, 64), (1.2, 1.2, 1.2)))
    assert choice.spec == "random-field-3d"
    assert "near-isotropic" in choice.reason and "drdm models fetch lct-3d" in choice.reason
    assert choice.line() == f"model: random-field-3d (auto: {choice.reason})"


def test_ct_like_stack_is_treated_as_ct():
    choice = choose_model(image((10, 32, 32), (0.8, 0.8, 5.0), low=-1024, high=400))
    assert choice.spec == "random-field-3d" and "CT-like" in choice.reason


def test_lct_in_the_cache_is_chosen(monkeypatch):
    from drdm.model_store import choice as model_choice

    monkeypatch.setattr(model_choice, "_lct_available", lambda: True)
    assert choose_model(image((40, 64, 64), (1.2, 1.2, 1.2))).spec == "lct-3d"


def test_explicit_and_environment_choices_win(monkeypatch):
    volume = image((40, 64, 64), (1.2, 1.2, 1.2))
    assert resolve_model("cmr-2d", volume).spec == "cmr-2d" and resolve_model("cmr-2d", volume).reason is None
    monkeypatch.setenv("DRDM_MODEL", "random-field-2d")
    assert resolve_model("auto", volume).spec == "random-field-2d"
    assert is_auto(None) and is_auto("auto") and is_auto("") and not is_auto("cmr-2d")


def test_cli_prints_the_choice_and_records_the_model(tmp_path, capsys):
    import json

    from drdm.cli import main

    volume = image((12, 24, 24), (1.2, 1.2, 1.2))
    sitk.WriteImage(volume, str(tmp_path / "iso.nii.gz"))
    assert main(["generate", str(tmp_path / "iso.nii.gz"), "--seed", "0", "--level", "20", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "model: random-field-3d (auto: near-isotropic 3D volume" in printed
    (stats,) = (tmp_path / "out").glob("*/stats.json")
    assert json.loads(stats.read_text())["model"] == "random-field-3d"


def test_model_choice_imports_no_torch_numpy_or_simpleitk():
    import subprocess
    import sys

    code = "import sys, drdm.model_store.choice; print(sorted(m for m in ('torch', 'numpy', 'SimpleITK') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
