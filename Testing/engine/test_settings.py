"""One set of deformation defaults (drdm.settings), used by every front end; torch-free for Slicer's module load."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from conftest import REPO


def test_settings_import_no_torch():
    code = "import sys, drdm.settings; print(sorted(m for m in ('torch', 'numpy', 'SimpleITK') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "DRDMSlicer"), "PATH": ""})
    assert out.stdout.strip() == "[]"


def test_defaults_are_topology_preserving_and_fast():
    from drdm.settings import DEFAULTS

    assert (DEFAULTS.mode, DEFAULTS.speed, DEFAULTS.device, DEFAULTS.count) == ("diffeomorphic", "fast", "auto", 1)


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="folding"), "unknown mode"), (dict(speed="warp"), "unknown speed"), (dict(device="tpu"), "unknown device"),
    (dict(count=0), "at least 1"), (dict(level=-1), "negative")])
def test_bad_settings_are_refused(kwargs, message):
    from drdm.settings import DeformationSettings, SettingsError

    with pytest.raises(SettingsError, match=message):
        DeformationSettings(**kwargs)


def test_start_level_follows_the_model():
    from drdm.settings import DeformationSettings, SettingsError

    assert DeformationSettings().start_level(80, 48) == 48
    assert DeformationSettings(level=80).start_level(80, 48) == 80
    with pytest.raises(SettingsError, match="choose 0 to 40"):
        DeformationSettings(level=41).start_level(40, 24)


def test_every_front_end_takes_its_defaults_from_settings():
    """CLI argparse defaults, deform_image, DeformationLogic.generate, the web page and the Slicer parameter node."""
    import inspect

    from drdm.cli import build_parser
    from drdm.physical.deform import deform_image
    from drdm.settings import DEFAULTS

    args = build_parser().parse_args(["generate", "x.nii.gz", "--out", "o"])
    assert (args.mode, args.speed, args.device) == (DEFAULTS.mode, DEFAULTS.speed, DEFAULTS.device)
    parameters = inspect.signature(deform_image).parameters  # below the front ends: the settings object, no defaults
    assert "mode" not in parameters and parameters["settings"].default is inspect.Parameter.empty
    module = ast.parse((REPO / "DRDMSlicer" / "DRDMSlicer.py").read_text(encoding="utf-8"))
    node = next(n for n in module.body if isinstance(n, ast.ClassDef) and n.name == "DRDMSlicerParameterNode")
    defaults = {s.target.id: ast.unparse(s.value) for s in node.body if isinstance(s, ast.AnnAssign) and s.value}
    assert (defaults["mode"], defaults["speed"], defaults["device"]) == ("DEFAULTS.mode", "DEFAULTS.speed", "DEFAULTS.device")
    assert defaults["count"] == "DEFAULTS.count" and defaults["autoLevel"] == "DEFAULTS.level is None"


def test_low_level_sampler_refuses_contradictory_arguments():
    import torch
    from conftest import field_only_model
    from drdm.sampler import generate

    model = field_only_model(2, 16)
    with pytest.raises(ValueError, match="levels only with speed 'faithful'"):
        generate(model, torch.zeros(1, 1, 16, 16), mode="reference", start_level=10, speed="fast", levels=[3, 2, 1])
