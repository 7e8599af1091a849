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
    return json.loads(_require(REFERENCE / "noise_stats.json").read_text())


@pytest.fixture(scope="session")
def checkpoint_path() -> Path:
    return _require(REFERENCE / "cmr_recresacnet_2d.pth")


@pytest.fixture(scope="session")
def cmr_model(checkpoint_path):
    from drdm.models import load_checkpoint

    return load_checkpoint(checkpoint_path)


def tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))
