"""The optimisation state of a training run and its resumable checkpoint ``last.pt``.

A checkpoint holds the network weights, the Adam state, the gradient scaler, the step, the settings and the
training time so far; restoring it continues the run exactly (each sample's randomness depends only on
``(seed, step, index)``, :mod:`drdm.training.data`). It is written atomically: an interruption while saving
leaves the previous checkpoint intact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..physical.io import write_atomically

STATE_FILE = "last.pt"
# Settings that must not change when a run is resumed.
RESUME_KEYS = ("ndims", "size", "levels", "batch", "lr", "seed", "regulariser", "width", "rec_num", "control_size",
               "noise_preset", "augment", "data", "phantoms", "phantom_texture", "val_fraction", "init", "zero_init")


@dataclass
class Optimisation:
    """The network being trained, what runs it (``trainable``: the network, or its DDP / compiled wrapper),
    the optimiser and the gradient scaler."""

    network: torch.nn.Module
    trainable: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler

    def save(self, path: Path, step: int, settings: dict, seconds: float) -> None:
        """Write the checkpoint after ``step`` steps atomically (a temporary file, then a rename)."""
        state = {"step": step, "network": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None, "config": settings,
                 "seconds": seconds}
        write_atomically(path, lambda temporary: torch.save(state, temporary))

    def restore(self, path: Path, settings: dict) -> tuple[int, float]:
        """Load the checkpoint at ``path``; returns ``(step, training seconds so far)``. Raises ``ValueError``
        when a setting in :data:`RESUME_KEYS` differs from the interrupted run's."""
        state = torch.load(path, weights_only=True, map_location="cpu")
        stored = state.get("config", {})
        changed = [k for k in RESUME_KEYS if k in stored and stored[k] != settings[k]]
        if changed:
            details = ", ".join(f"{k}: {stored[k]!r} → {settings[k]!r}" for k in changed)
            raise ValueError(f"cannot resume {path}: settings differ from the interrupted run ({details})")
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        return int(state["step"]), float(state.get("seconds", 0.0))


def make_optimisation(network: torch.nn.Module, lr: float, amp: str, device: torch.device, world: int,
                      compile_network: bool = False) -> Optimisation:
    """Adam over the trainable parameters, a gradient scaler (active for fp16 only), and the network wrapped
    in DistributedDataParallel when ``world > 1`` and in ``torch.compile`` when asked."""
    optimizer = torch.optim.Adam([p for p in network.parameters() if p.requires_grad], lr=lr)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    trainable = network
    if world > 1:
        trainable = torch.nn.parallel.DistributedDataParallel(network, device_ids=[device] if device.type == "cuda" else None)
    if compile_network:
        trainable = torch.compile(trainable)
    return Optimisation(network, trainable, optimizer, scaler)
