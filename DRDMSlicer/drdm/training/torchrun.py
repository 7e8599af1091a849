"""Processes started by ``torchrun``: which share of the work is this process's, and which GPU it uses.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` for every process it starts. ``drdm train`` joins a
process group with them; ``drdm augment`` and ``drdm synthesize`` need no communication at all: process ``RANK``
of ``WORLD_SIZE`` takes the jobs ``j`` with ``j mod WORLD_SIZE == RANK`` (the ``--shard RANK/WORLD_SIZE`` split),
on ``cuda:LOCAL_RANK`` when CUDA is used.
"""

from __future__ import annotations

import os

import torch


def torchrun_shard() -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` when this process is one of several started by torchrun, else ``None``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    rank = int(os.environ.get("RANK", "0"))
    if not 0 <= rank < world:
        raise ValueError(f"torchrun environment: RANK {rank} is outside 0 … WORLD_SIZE-1 = {world - 1}")
    return rank, world


def process_device(name: str) -> torch.device:
    """The device of this process for ``name`` (``auto``, ``cpu``, ``cuda``): under torchrun with CUDA,
    ``cuda:LOCAL_RANK`` (made the current device), so each process of a node uses its own GPU."""
    from ..models import resolve_device

    device = resolve_device(name)
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    return device
