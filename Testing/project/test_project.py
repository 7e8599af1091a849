"""Project layout and packaging rules: import paths, engine purity, torch requirement, CMake listing."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import tomllib
from conftest import REPO

ENGINE = REPO / "DRDMSlicer" / "drdm"


def test_layout():
    for name in ("README.md", "LICENSE", "CMakeLists.txt", "DRDMSlicer.s4ext", "DRDMSlicer.json", "pyproject.toml",
                 "DRDMSlicer", "Resources", "Testing", "benchmarks", ".ci/run", "DRDMSlicer/CMakeLists.txt"):
        assert (REPO / name).exists(), name


def test_import_without_install():
    code = "import drdm, drdm.sampler, drdm.spatial; print(drdm.__file__)"
    env = {"PYTHONPATH": str(REPO / "DRDMSlicer"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith(str(ENGINE))


def test_engine_imports_neither_qt_nor_slicer():
    forbidden = re.compile(r"^\s*(import|from)\s+(qt|ctk|slicer|vtk|PythonQt|PySide\d?|PyQt\d?)\b", re.MULTILINE)
    offenders = [p.name for p in ENGINE.rglob("*.py") if forbidden.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_only_spatial_calls_grid_sample():
    users = sorted(p.name for p in ENGINE.rglob("*.py") if "grid_sample" in p.read_text(encoding="utf-8"))
    assert users == ["spatial.py"]


def test_torch_requirement_is_a_range_and_ci_pins_it():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    torch_req = [r for r in project["dependencies"] if r.startswith("torch")]
    assert torch_req and "==" not in torch_req[0] and ">=" in torch_req[0]
    assert "torch==2.13.0" in (REPO / "constraints" / "ci.txt").read_text(encoding="utf-8")
    assert "constraints/ci.txt" in (REPO / "scripts" / "setup_venv.sh").read_text(encoding="utf-8")


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "bash scripts/test.sh" in readme and "bash scripts/demo.sh" in readme
    assert "bash scripts/test.sh" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_cmake_lists_every_python_file():
    cmake = (REPO / "DRDMSlicer" / "CMakeLists.txt").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\s+(\S+\.py)\s*$", cmake, re.MULTILINE))
    present = {str(p.relative_to(REPO / "DRDMSlicer")) for p in (REPO / "DRDMSlicer").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert present == listed


def test_extensions_index_entry():
    entry = json.loads((REPO / "DRDMSlicer.json").read_text(encoding="utf-8"))
    assert {"$schema", "category", "scm_url"} <= set(entry)
    allowed = {"$schema", "build_dependencies", "build_subdirectory", "category", "enabled", "scm_revision",
               "scm_type", "scm_url", "tier", "dicom_support_rule"}
    assert set(entry) <= allowed
    assert entry["build_dependencies"] == ["PyTorch"]
    cmake = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "project(DRDMSlicer)" in cmake and 'set(EXTENSION_DEPENDS "PyTorch")' in cmake


def test_bundled_files_are_packaged():
    """Every file in drdm/model_store/bundled/ is a Slicer module resource and pip package data."""
    cmake = (REPO / "DRDMSlicer" / "CMakeLists.txt").read_text(encoding="utf-8")
    resources = set(re.findall(r"^\s+(drdm/model_store/bundled/\S+)\s*$", cmake, re.MULTILINE))
    folder = ENGINE / "model_store" / "bundled"
    bundled = {f"drdm/model_store/bundled/{p.name}" for p in folder.iterdir() if p.is_file()}
    assert bundled and resources == bundled
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]
    from fnmatch import fnmatch

    prefix = "drdm/model_store/"
    assert all(any(fnmatch(name[len(prefix):], pattern) for pattern in package_data["drdm.model_store"]) for name in bundled)


def test_every_engine_package_is_packaged():
    """setuptools installs exactly the packages listed: every folder of the engine with an ``__init__.py`` is one."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    folders = {".".join(("drdm", *p.parent.relative_to(ENGINE).parts)) for p in ENGINE.rglob("__init__.py")}
    assert folders == {name for name in setuptools["packages"] if name.split(".")[0] == "drdm"}


def test_the_engine_folder_is_a_map_not_a_list():
    """At most 18 entries directly in drdm/ (modules, ``__init__.py`` and ``__main__.py`` included, and rooms)."""
    entries = sorted(p.name for p in ENGINE.iterdir() if p.name != "__pycache__")
    assert len(entries) <= 18, entries
    rooms = {p.name for p in ENGINE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert all((ENGINE / room / "__init__.py").is_file() for room in rooms)


def test_the_building_blocks_keep_their_paths():
    """The paper's building blocks, which the docs show and users script against, stay where they were."""
    code = ("from drdm.spatial import warp, compose, integrate, jacobian_determinant; from drdm.noise import ForwardProcess; "
            "from drdm.network import RecResACNet; from drdm.sampler import generate; "
            "from drdm.models import load_checkpoint, untrained_model, DRDMModel")
    subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(REPO / "DRDMSlicer"), "PATH": "/usr/bin:/bin"},
                   check=True)


def test_one_package_version():
    import drdm
    from drdm.settings import VERSION

    assert drdm.__version__ == VERSION == tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
