"""Project layout and packaging rules: import paths, engine purity, torch requirement, CMake listing."""

from __future__ import annotations

import ast
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
    """Every file in drdm/bundled/ is a Slicer module resource and pip package data."""
    cmake = (REPO / "DRDMSlicer" / "CMakeLists.txt").read_text(encoding="utf-8")
    resources = set(re.findall(r"^\s+(drdm/bundled/\S+)\s*$", cmake, re.MULTILINE))
    bundled = {f"drdm/bundled/{p.name}" for p in (ENGINE / "bundled").iterdir() if p.is_file()}
    assert bundled and resources == bundled
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]
    from fnmatch import fnmatch

    assert all(any(fnmatch(name[len("drdm/"):], pattern) for pattern in package_data["drdm"]) for name in bundled)


def engine_import_graph() -> dict[str, set[str]]:
    """Engine module -> engine modules it imports at run time (top level or inside functions; imports under
    ``if TYPE_CHECKING:`` are annotations only and left out)."""
    folder = REPO / "DRDMSlicer" / "drdm"
    names = {p.stem for p in folder.glob("*.py")}
    graph = {}
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING") for n in ast.walk(block)}
        deps = set()
        for node in ast.walk(tree):
            if id(node) in typing_only or not isinstance(node, ast.ImportFrom):
                continue
            if node.level == 1:
                deps |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
            elif node.module and node.module.startswith("drdm."):
                deps.add(node.module.split(".")[1])
        graph[path.stem] = (deps & names) - {path.stem}
    return graph


def test_engine_modules_form_no_import_cycle():
    graph = engine_import_graph()
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            assert state.get(dep) != 1, "import cycle: " + " -> ".join(path + [dep])
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert "registry" not in graph["models"] and "model_files" not in graph["models"]
