"""DRDMSlicer.py cannot be imported outside Slicer: check it statically against the .ui and the logic."""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET

import pytest
from conftest import REPO

MODULE = REPO / "DRDMSlicer" / "DRDMSlicer.py"
UI = REPO / "DRDMSlicer" / "Resources" / "UI" / "DRDMSlicer.ui"


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(MODULE.read_text(encoding="utf-8"), filename=str(MODULE))


def classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def attribute_uses(tree: ast.AST, owner: str) -> set[str]:
    """Names ``X`` used as ``self.<owner>.X``."""
    names = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and node.value.attr == owner and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"):
            names.add(node.attr)
    return names


def test_module_classes_exist(tree):
    assert {"DRDMSlicer", "DRDMSlicerWidget", "DRDMSlicerLogic", "DRDMSlicerTest", "DRDMSlicerParameterNode"} <= set(classes(tree))


def test_every_ui_widget_used_exists():
    names = {w.get("name") for w in ET.parse(UI).iter("widget")}
    used = attribute_uses(ast.parse(MODULE.read_text(encoding="utf-8")), "ui")
    assert used and used <= names, used - names


def test_parameter_names_match_parameter_node(tree):
    bound = {p.find("string").text for p in ET.parse(UI).iter("property") if p.get("name") == "SlicerParameterName"}
    node = classes(tree)["DRDMSlicerParameterNode"]
    fields = {stmt.target.id for stmt in node.body if isinstance(stmt, ast.AnnAssign)}
    assert bound == fields


def test_every_logic_method_called_exists(tree):
    logic = classes(tree)["DRDMSlicerLogic"]
    defined = {f.name for f in logic.body if isinstance(f, ast.FunctionDef)} | {"getParameterNode"}
    called = attribute_uses(tree, "logic")
    assert called <= defined, called - defined
    sys.path.insert(0, str(REPO / "DRDMSlicer"))
    pytest.importorskip("slicer", reason="slicer-core is not installed")
    from DRDMSlicerLib.logic import DeformationLogic

    used = attribute_uses(logic, "deformation") - {"scene"}
    assert used and all(hasattr(DeformationLogic, name) for name in used), used


def test_engine_imported_lazily(tree):
    """The module must load in Slicer before PyTorch is installed: no top-level drdm/torch imports."""
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top.add(node.module.split(".")[0])
    assert not top & {"drdm", "torch", "DRDMSlicerLib", "SimpleITK"}


def test_help_text_cites_the_paper():
    text = MODULE.read_text(encoding="utf-8")
    assert "Medical Image Analysis" in text and "2407.07295" in text and "acknowledgementText" in text
