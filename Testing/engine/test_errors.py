"""drdm.errors: one base class for user-facing errors; failed allocations recognised and worded once."""

from __future__ import annotations

import pytest
import torch
from drdm.errors import DRDMError, OutOfMemory, is_out_of_memory, out_of_memory_as_error
from drdm.model_store.registry import RegistryError
from drdm.models import CheckpointError
from drdm.physical.io import InputError


@pytest.mark.parametrize("kind", [InputError, CheckpointError, RegistryError, OutOfMemory])
def test_user_facing_errors_share_one_base_and_stay_value_errors(kind):
    assert issubclass(kind, DRDMError) and issubclass(kind, ValueError)


@pytest.mark.parametrize("error, expected", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("CUDA error: out of memory"), True),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 10 bytes"), True),
    (MemoryError(), True),
    (RuntimeError("shape mismatch"), False),
    (ValueError("out of memory"), False),
])
def test_is_out_of_memory(error, expected):
    assert is_out_of_memory(error) is expected


def test_out_of_memory_as_error_translates_only_allocation_failures():
    with pytest.raises(OutOfMemory, match="^out of GPU memory: try a smaller volume"):
        with out_of_memory_as_error():
            raise torch.OutOfMemoryError("CUDA out of memory")
    with pytest.raises(RuntimeError, match="shape mismatch"):
        with out_of_memory_as_error():
            raise RuntimeError("shape mismatch")
