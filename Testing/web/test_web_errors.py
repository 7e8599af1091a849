"""drdm web's generation handler turns a failed allocation into the one out-of-memory message (no browser)."""

from __future__ import annotations

import asyncio
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import REPO, TrameState, field_only_model

pytest.importorskip("trame_slicer", reason="the web extra is not installed (pip install -e '.[web]')")
sys.path.insert(0, str(REPO / "DRDMSlicer"))
from drdm.errors import MEMORY_ADVICE  # noqa: E402
from drdm.settings import DeformationSettings  # noqa: E402
from DRDMSlicerLib import logic  # noqa: E402
from DRDMSlicerLib.logic import DeformationRequest  # noqa: E402

from drdm_web.app import DRDMWebApp  # noqa: E402
from drdm_web.job import GenerationJob  # noqa: E402
from drdm_web.session import SessionGate  # noqa: E402


@pytest.mark.parametrize("error, message", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB"), "out of GPU memory"),
    (MemoryError(), "out of memory"),
])
def test_generation_out_of_memory_is_shown_as_one_message(monkeypatch, error, message):
    def out_of_memory(*args, **kwargs):
        raise error

    monkeypatch.setattr(logic, "deform_images", out_of_memory)
    app = object.__new__(DRDMWebApp)  # the handler needs only the state, the logic and the failure display
    app.logic = logic.DeformationLogic(scene=None)  # add_samples is never reached
    app.gate = SessionGate()
    state = TrameState()
    monkeypatch.setattr(DRDMWebApp, "state", state)
    image = sitk.GetImageFromArray(np.ones((8, 16, 16), np.float32))
    request = DeformationRequest(None, None, None, image, None, field_only_model(3, 16),
                                 DeformationSettings(level=40, seed=0, speed="fast"))
    asyncio.run(app._run(request, GenerationJob()))
    assert state.drdm_error == f"{message}: {MEMORY_ADVICE}"
    assert state.drdm_status == f"error: {message}: {MEMORY_ADVICE}" and state.drdm_running is False
