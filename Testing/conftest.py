"""Shared fixtures: the reference material in ../shared (tests using it skip with a reason when absent)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DRDM_SHARED", REPO.parent / "shared"))
REFERENCE = SHARED / "reference"
DATA = SHARED / "data"

torch.set_num_threads(min(2, torch.get_num_threads()))


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference material not available: {path} (set DRDM_SHARED to the shared/ folder)")
    return path


@pytest.fixture(scope="session")
def vectors() -> dict[str, np.ndarray]:
    """Arrays of vectors_public.npz (read by name)."""
    with np.load(_require(REFERENCE / "vectors_public.npz")) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def noise_stats() -> dict:
    return json.loads(_require(REFERENCE / "noise_stats.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def checkpoint_path() -> Path:
    return _require(REFERENCE / "cmr_recresacnet_2d.pth")


@pytest.fixture(scope="session")
def cmr_model(checkpoint_path):
    from drdm.models import load_checkpoint

    return load_checkpoint(checkpoint_path)


def tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def field_only_model(ndims: int, size: int, seed: int = 0):
    """An untrained model whose network outputs zero (conv_out zeroed): the deformation is the random forward
    field alone. Tests of geometry and plumbing use it; an untrained network would move everything away."""
    from drdm.models import untrained_model

    model = untrained_model(ndims, size=size, seed=seed)
    torch.nn.init.zeros_(model.network.conv_out.weight)
    torch.nn.init.zeros_(model.network.conv_out.bias)
    return model


def interrupt_after(function, marker: str):
    """``function`` that does its work and then raises KeyboardInterrupt (a Ctrl-C just after it) when its first
    argument (a path) contains ``marker``: deterministic interruption at a chosen point."""
    import os

    def wrapped(*args, **kwargs):
        result = function(*args, **kwargs)
        if marker in os.fspath(args[0]):
            raise KeyboardInterrupt
        return result

    return wrapped


@pytest.fixture(scope="session")
def mrml_scene_bundle():
    """One slicer-core scene per session with the logics Slicer would register (SLICER.md §2.1): each segmentations
    logic given a scene registers the converter rules again, so every test file shares this one (``scene.Clear(0)``
    between tests). Skips without slicer-core."""
    import types

    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    colors = app_logic.GetColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    app_logic.SetModuleLogic("Colors", colors)
    logics = {}
    for name, logic in (("Volumes", slicer.vtkSlicerVolumesLogic()), ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic()),
                        ("Transforms", slicer.vtkSlicerTransformLogic()),
                        ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic())):
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(app_logic)
        app_logic.SetModuleLogic(name, logic)
        logics[name] = logic
    return types.SimpleNamespace(scene=scene, app_logic=app_logic, logics=logics)


class TrameState(dict):
    """The part of trame's state that drdm web's handlers use, without a server: attributes, ``update`` and
    ``with state:``."""

    __getattr__ = dict.get

    def __setattr__(self, name, value):
        self[name] = value

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# -- one fixture per concept, shared by the rooms' tests ----------------------------------------------------------------

@pytest.fixture()
def empty_cache(tmp_path, monkeypatch) -> Path:
    """No downloaded or imported model and no ``$DRDM_MODEL``: the registry as a new user's machine sees it; returns
    the (empty) cache folder of models."""
    monkeypatch.setenv("DRDM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DRDM_MODEL", raising=False)
    return tmp_path / "home" / "models"


@pytest.fixture(scope="session")
def cmr():
    """The bundled ``cmr-2d`` model (the authors' published weights, converted), on the CPU."""
    from drdm import load_model

    return load_model("cmr-2d", device="cpu")


@pytest.fixture(scope="session")
def small_model():
    """An untrained 2D model on a 32² grid: sampler plumbing, fast."""
    from drdm.models import untrained_model

    return untrained_model(2, size=32)
