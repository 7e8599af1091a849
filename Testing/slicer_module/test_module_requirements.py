"""DRDMSlicerLib.requirements: the PyTorch / safetensors checks the Slicer module runs before importing the engine."""

from __future__ import annotations

import subprocess
import sys

import pytest
import tomllib
from conftest import REPO

sys.path.insert(0, str(REPO / "DRDMSlicer"))
from DRDMSlicerLib import requirements  # noqa: E402


def test_torch_requirement_is_the_packages():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert requirements.TORCH_REQUIREMENT in project["dependencies"]
    assert requirements.SAFETENSORS_REQUIREMENT in project["dependencies"]


@pytest.mark.parametrize(("installed", "ok"), [
    ("2.1.0", True), ("2.5.1+cu121", True), ("2.13.0", True), ("2.7.0.dev20250101", True),
    ("2.0.1", False), ("1.13.1+cpu", False), ("3.0.0", False), ("2.1.0rc1", False), (None, False), ("nonsense!", False),
])
def test_requirement_problem(installed, ok):
    problem = requirements.requirement_problem(requirements.TORCH_REQUIREMENT, installed)
    assert (problem is None) == ok
    if not ok:
        assert "torch" in problem and requirements.TORCH_REQUIREMENT in problem
        assert ("not installed" in problem) == (installed is None)


def test_version_specifier_is_what_installTorch_appends():
    """PyTorchUtils.installTorch builds "torch" + torchVersionRequirement (fepegar/SlicerPyTorch:
    PyTorchUtils/PyTorchUtils.py, _getPipInstallArguments)."""
    from packaging.requirements import Requirement

    spec = requirements.version_specifier(requirements.TORCH_REQUIREMENT)
    assert Requirement("torch" + spec) == Requirement(requirements.TORCH_REQUIREMENT)


def test_checking_imports_no_torch():
    """The check reads metadata: PyTorch is never imported by it (a broken install could not be replaced then)."""
    code = ("import sys; from DRDMSlicerLib import requirements as r; r.unmet_requirement(r.TORCH_REQUIREMENT); "
            "r.unmet_requirement(r.SAFETENSORS_REQUIREMENT); print(sorted(m for m in sys.modules if m.split('.')[0] "
            "in ('torch', 'safetensors', 'drdm')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO / "DRDMSlicer", capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
    assert requirements.installed_version("packaging")
    assert requirements.installed_version("surely-not-a-distribution-xyz") is None
