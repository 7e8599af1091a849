"""drdm web's Load handler without a server: a path swapped for an outward link between the check and the read
loads nothing (item 7); over-long and odd paths end in one ``error:`` line (item 8)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import REPO, TrameState

pytest.importorskip("trame_slicer", reason="the web extra is not installed (pip install -e '.[web]')")
sys.path.insert(0, str(REPO / "DRDMSlicer"))
from drdm_web.app import DRDMWebApp  # noqa: E402
from drdm_web.files import DataFolder  # noqa: E402
from drdm_web.inputs import Inputs  # noqa: E402


def write(path: Path, value: int) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(np.full((3, 8, 8), value, np.int16)), str(path))
    return path


@pytest.fixture
def app(tmp_path, monkeypatch):
    """The app's Load handler on a data folder with ``sub/a.nii.gz`` (voxels 1) and ``outside/a.nii.gz`` (voxels 9);
    what it would show is recorded instead of shown."""
    data, outside, private = tmp_path / "data", tmp_path / "outside", tmp_path / "private"
    (data / "sub").mkdir(parents=True)
    outside.mkdir()
    private.mkdir(mode=0o700)
    write(data / "sub" / "a.nii.gz", 1)
    write(outside / "a.nii.gz", 9)
    app = object.__new__(DRDMWebApp)
    app.data, app.shown = DataFolder(data), []
    app.inputs = Inputs(app.data, SimpleNamespace(private_folder=lambda: contextlib.nullcontext(private)))
    app._replace_inputs = lambda image, labels, name: app.shown.append(sitk.GetArrayFromImage(image).max())
    monkeypatch.setattr(DRDMWebApp, "state", TrameState(drdm_segmentation_path=""))
    return app


def load(app, typed: str) -> str:
    app.state.drdm_volume_path = typed
    app.state.drdm_status = "before"
    app.load_inputs()
    return app.state.drdm_status


def test_load_reads_a_file_inside(app):
    assert load(app, "sub/a.nii.gz") == "before" and app.shown == [1]


def test_a_folder_swapped_for_an_outward_link_after_the_check_loads_nothing(app, monkeypatch):
    data = app.data.root
    real_realpath = os.path.realpath

    def check_then_swap(path, *args, **kwargs):  # the attacker wins the race: right after the check
        result = real_realpath(path, *args, **kwargs)
        if str(path).endswith("sub/a.nii.gz") and not (data / "sub").is_symlink():
            (data / "sub").rename(data / "sub-before")
            (data / "sub").symlink_to(data.parent / "outside")
        return result

    monkeypatch.setattr(os.path, "realpath", check_then_swap)
    text = load(app, "sub/a.nii.gz")
    assert 9 not in app.shown  # nothing of the outside file was read
    assert text.startswith("error: ") and "symbolic link that leads outside" in text


@pytest.mark.parametrize("typed", ["a" * 300 + ".nii.gz", "sub/" + "b" * 256, "x/" * 3000 + "c.nii.gz",
                                   "sub/a.nii.gz\x00", "bad\udcff.nii.gz", "sub\n/a.nii.gz"])
def test_unusable_paths_end_in_one_error_line(app, typed):
    text = load(app, typed)  # no exception escapes (wslink would send its traceback to the browser)
    assert text.startswith("error: ") and "\n" not in text and len(text) < 350, text
    assert "Traceback" not in text and str(app.data.root) not in text and sys.prefix not in text
    assert app.shown == []


@pytest.mark.parametrize("state, message", [
    (dict(drdm_keep="label_1"), "from the list"),  # a string, not a list: its characters are not segments
    (dict(drdm_keep=[["label_1"]]), "unhashable"),  # not an id at all
    (dict(drdm_only=["../../etc/passwd"]), "from the list"),
    (dict(drdm_magnitude="1e999"), None), (dict(drdm_magnitude="abc"), "could not convert"),
    (dict(drdm_margin="nan"), None),
])
def test_steering_values_a_raw_client_sends_are_checked(monkeypatch, state, message):
    """The size, regions and margin come from the browser's state, which a raw WebSocket client can set to anything:
    segment ids must be ones the page listed; numbers are parsed here and judged by the engine's settings."""
    app = object.__new__(DRDMWebApp)
    values = dict(drdm_magnitude=None, drdm_keep=[], drdm_only=[], drdm_margin=10,
                  drdm_segment_items=[{"title": "label 1", "value": "label_1"}])
    monkeypatch.setattr(DRDMWebApp, "state", TrameState({**values, **state}))
    if message is None:  # parsed; the engine refuses it in one line (DeformationSettings)
        from drdm.settings import DeformationSettings, SettingsError

        with pytest.raises(SettingsError):
            DeformationSettings(seed=0, **app._steering())
        return
    with pytest.raises((TypeError, ValueError), match=message):
        app._steering()


GENERATE_STATE = dict(drdm_level=48, drdm_seed=7, drdm_random_seed=False, drdm_count=2, drdm_mode="diffeomorphic",
                      drdm_speed="fast", drdm_device="cpu", drdm_slices="coherent", drdm_magnitude=None, drdm_keep=[],
                      drdm_only=[], drdm_margin=10, drdm_segment_items=[])


@pytest.mark.parametrize("state, message", [
    (dict(drdm_count=10**9), "at most 100 samples at a time"),  # would otherwise plan a billion seeds
    (dict(drdm_count="1e9"), "invalid literal"), (dict(drdm_count=0), "count must be a whole number"),
    (dict(drdm_seed=2**64), "the seed must be a whole number"), (dict(drdm_seed="x; rm -rf /"), "invalid literal"),
    (dict(drdm_level=-1), "level -1 is negative"), (dict(drdm_level=None), "int\\(\\) argument"),
    (dict(drdm_mode="folding"), "^unknown mode 'folding'; choose one of reference, diffeomorphic$"),
    (dict(drdm_speed=["fast"]), "unknown speed"), (dict(drdm_device="cuda:7"), "unknown device"),
])
def test_generation_values_a_raw_client_sends_are_checked(monkeypatch, state, message):
    """Every value the settings object is built from comes from the browser's state, which a raw WebSocket client
    sets to anything (``trame.state.update``): each is parsed and judged before a model loads or a job starts, in
    one line; the count is bounded (MAX_INTERACTIVE_COUNT) so one message cannot plan a billion samples."""
    app = object.__new__(DRDMWebApp)
    monkeypatch.setattr(DRDMWebApp, "state", TrameState({**GENERATE_STATE, **state}))
    with pytest.raises((TypeError, ValueError), match=message) as raised:
        app._settings()
    assert "\n" not in str(raised.value)


def test_the_panel_s_values_make_one_settings_object(monkeypatch):
    app = object.__new__(DRDMWebApp)
    monkeypatch.setattr(DRDMWebApp, "state", TrameState(dict(GENERATE_STATE)))
    settings, segments = app._settings()
    assert (settings.level, settings.seed, settings.count, settings.device, settings.margin) == (48, 7, 2, "cpu", 10.0)
    assert segments == {"keep": [], "only": []}
