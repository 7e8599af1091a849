"""The product package holds the product: nothing under ``drdm_web`` imports test tools (selenium, pytest); the
browser helpers and the raw wslink client live beside the web tests."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

TEST_TOOLS = ("selenium", "pytest")


def imported_roots(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports (module level and inside functions alike)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_nothing_under_drdm_web_imports_test_tools():
    files = sorted((REPO / "drdm_web").rglob("*.py"))
    assert files
    found = {str(path.relative_to(REPO)): sorted(imported_roots(path) & set(TEST_TOOLS)) for path in files}
    assert {name: tools for name, tools in found.items() if tools} == {}


def test_the_browser_helpers_live_beside_the_tests():
    here = Path(__file__).parent
    assert (here / "browser.py").is_file() and (here / "raw_client.py").is_file()
    assert "selenium" in imported_roots(here / "browser.py")
    assert not (REPO / "drdm_web" / "browser.py").exists() and not (REPO / "drdm_web" / "client.py").exists()
