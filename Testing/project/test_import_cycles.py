"""No import cycle in ``drdm``, ``drdm_web`` or ``DRDMSlicerLib``, at any depth.

Every import counts: module level, inside functions and under ``if TYPE_CHECKING:`` alike. ``from pkg import name``
is an edge to the submodule ``pkg.name`` when there is one, else to ``pkg`` itself (its ``__init__``). A parent
package that Python initialises before a submodule is not an edge of its own: ``import drdm.physical.io`` runs
``drdm/__init__.py`` first, which is why that file may import its rooms (lazily) without closing a circle.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from conftest import REPO

PACKAGES = {"drdm": REPO / "DRDMSlicer" / "drdm", "drdm_web": REPO / "drdm_web",
            "DRDMSlicerLib": REPO / "DRDMSlicer" / "DRDMSlicerLib"}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the three packages (a package is its ``__init__.py``)."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``name`` (at ``path``) imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {module for module in found if module in modules} - {name}


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_graph_sees_every_kind_of_import(tmp_path, monkeypatch):
    """The checker finds a circle closed by a function-level import and one closed under TYPE_CHECKING."""
    package = tmp_path / "pkg"
    (package / "room").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "room" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .room import b\n")
    (package / "room" / "b.py").write_text("def f():\n    from ..a import x\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import D\n")
    (package / "d.py").write_text("import pkg.c\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGES", {"pkg": package})
    graph = import_graph()
    assert graph["pkg.a"] == {"pkg.room.b"} and graph["pkg.room.b"] == {"pkg.a"}
    assert graph["pkg.c"] == {"pkg.d"} and graph["pkg.d"] == {"pkg.c"}
    assert find_cycle(graph) in (["pkg.a", "pkg.room.b", "pkg.a"], ["pkg.c", "pkg.d", "pkg.c"])
    (package / "room" / "b.py").write_text("")
    (package / "d.py").write_text("")
    assert find_cycle(import_graph()) is None


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycle(package):
    graph = import_graph()
    assert any(name.startswith(package) for name in graph)
    part = {name: deps for name, deps in graph.items() if name.split(".")[0] == package}
    assert find_cycle({name: {d for d in deps if d in part} for name, deps in part.items()}) is None


def test_no_import_cycle_across_packages():
    """The web app and the Slicer glue use the engine, never the reverse: no circle through the three packages."""
    assert find_cycle(import_graph()) is None


def test_the_web_page_does_not_import_the_app():
    """The page is built from the app's state and handlers handed to it, not by importing the app back."""
    assert "drdm_web.app" not in import_graph()["drdm_web.panel"]


def test_training_steps_take_their_settings_from_a_module_of_their_own():
    graph = import_graph()
    for step in ("drdm.training.initialisation", "drdm.training.loader"):
        assert "drdm.training.config" in graph[step] and "drdm.training.loop" not in graph[step]


def test_no_module_imports_the_package_root():
    """``drdm/__init__.py`` is the public API, importing the rooms on first use; nothing inside imports it back."""
    graph = import_graph()
    assert sorted(name for name, deps in graph.items() if "drdm" in deps) == []


def test_the_building_blocks_stay_below_the_model_store():
    graph = import_graph()
    assert not {"drdm.model_store.registry", "drdm.model_store.files"} & graph["drdm.models"]


BUILDING_BLOCKS = ("drdm.spatial", "drdm.noise", "drdm.network", "drdm.sampler", "drdm.models", "drdm.settings",
                   "drdm.errors", "drdm.kernels", "drdm.field_statistics", "drdm.slice_stack")
ROOMS_ABOVE = ("drdm.physical", "drdm.registration", "drdm.training", "drdm.model_store", "drdm.transforms", "drdm.cli")


def in_room(module: str, rooms: tuple[str, ...]) -> bool:
    return any(module == room or module.startswith(room + ".") for room in rooms)


def reached(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports at any depth (itself excluded)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for dep in graph[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen - {start}


def test_the_model_store_imports_nothing_from_training():
    """Training saves models into the store (``drdm.model_store.files``); the store never reaches back into
    ``drdm.training``, at any depth, function-level imports included."""
    graph = import_graph()
    store = [name for name in graph if name.split(".")[:2] == ["drdm", "model_store"]]
    assert len(store) >= 9
    assert {name: sorted(d for d in reached(graph, name) if d.startswith("drdm.training"))
            for name in store} == {name: [] for name in store}
    assert not {"drdm.model_store." + name for name in ("registry", "files", "download", "loading", "offered")} & {
        d for name in ("drdm.models", "drdm.noise", "drdm.network") for d in reached(graph, name)}


def test_the_layer_checker_follows_imports_at_any_depth(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from . import b\n")
    (package / "b.py").write_text("from . import c\n")
    (package / "c.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGES", {"pkg": package})
    assert reached(import_graph(), "pkg.a") == {"pkg.b", "pkg.c"}


def test_building_blocks_import_no_room_above_them():
    """The paper's building blocks (and settings, errors, kernels) import nothing from physical, registration,
    training, model_store, transforms or the CLI, at any depth."""
    graph = import_graph()
    blocks = [name for name in graph if in_room(name, BUILDING_BLOCKS)]
    assert len(blocks) >= 10
    upward = {name: sorted(dep for dep in reached(graph, name) if in_room(dep, ROOMS_ABOVE)) for name in blocks}
    assert {name: deps for name, deps in upward.items() if deps} == {}


def test_the_engine_imports_no_front_end():
    """Nothing in ``drdm`` reaches ``drdm_web`` or ``DRDMSlicerLib`` at any depth (``drdm web`` is registered by the web
    package as a ``drdm.commands`` entry point, :func:`drdm.cli.parser.add_plugin_commands`)."""
    graph = import_graph()
    engine = [name for name in graph if name.split(".")[0] == "drdm"]
    assert {name: sorted(d for d in reached(graph, name) if d.split(".")[0] in ("drdm_web", "DRDMSlicerLib"))
            for name in engine} == {name: [] for name in engine}
    text = "\n".join(path.read_text(encoding="utf-8") for path in PACKAGES["drdm"].rglob("*.py"))
    assert "import drdm_web" not in text and "from drdm_web" not in text and "import_module(\"drdm_web" not in text


def test_no_test_tool_in_the_product():
    """selenium and pytest are test tools: no module of the three packages imports them."""
    import ast

    for folder in PACKAGES.values():
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                assert not [n for n in names if n.split(".")[0] in ("selenium", "pytest")], path
