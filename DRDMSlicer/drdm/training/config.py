"""The settings of one training run (:class:`TrainingConfig`): what ``drdm train`` parses and every training step reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..models import DRDMModel
from ..noise import ForwardProcess
from .losses import REGULARISERS

AMP_MODES = ("none", "bf16", "fp16")


@dataclass
class TrainingConfig:
    """Settings of one training run (see ``drdm train --help``)."""

    out: str
    data: list[str] = field(default_factory=list)  # image files/folders; empty: procedural phantoms
    ndims: int = 2
    size: int = 128
    levels: int = 80
    batch: int = 1
    lr: float = 1e-4
    steps: int = 1000
    seed: int = 0
    device: str = "auto"
    amp: str = "none"
    val_fraction: float = 0.1
    val_every: int = 100
    val_samples: int = 8
    checkpoint_every: int = 100
    log_every: int = 10
    regulariser: str = "paper"
    width: int = 10
    rec_num: int = 2
    noise_preset: str = ""  # default: cmr-2d (2D) / lct-3d (3D)
    control_size: int = 0  # default: the preset's, scaled with size (noise_overrides)
    phantoms: int = 64
    phantom_texture: float = 0.0
    augment: bool = True
    name: str = "drdm-model"
    command: str = ""
    init: str = ""  # fine-tuning: start from this model's weights (name, .pth, .safetensors/.json)
    zero_init: bool = True  # a new network starts at the zero solution (output layer ×1e-3); unused with init
    workers: int = 0  # DataLoader processes preparing samples (0: the training process itself)
    channels_last: bool = False  # channels-last memory format for the network and its inputs
    compile: bool = False  # torch.compile the network for training
    cache: str = ""  # folder keeping preprocessed training images between runs ("": no cache)

    def check(self) -> None:
        """Raise ``ValueError`` for impossible settings."""
        if self.ndims not in (2, 3):
            raise ValueError(f"`ndims` must be 2 or 3, got {self.ndims}")
        if self.size < 16 or self.size % 8:
            raise ValueError(f"`size` must be a multiple of 8 and at least 16, got {self.size}")
        for name in ("steps", "batch", "levels", "width", "rec_num", "val_every", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1, got {getattr(self, name)}")
        if self.workers < 0 or self.val_samples < 0:
            raise ValueError(f"`workers` and `val_samples` must be 0 or more, got {self.workers}, {self.val_samples}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"`val_fraction` must lie in [0, 1), got {self.val_fraction}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"`amp` must be one of {AMP_MODES}")
        if self.regulariser not in REGULARISERS:
            raise ValueError(f"`regulariser` must be one of {REGULARISERS}")
        if self.lr <= 0:
            raise ValueError(f"`lr` must be positive, got {self.lr}")

    def preset(self) -> str:
        return self.noise_preset or ("cmr-2d" if self.ndims == 2 else "lct-3d")

    def noise_overrides(self, initial: DRDMModel | None = None) -> dict:
        """Forward-process settings for this training size: the preset's (or, fine-tuning, the ``initial``
        model's) scaled so that deformations are the same fraction of the field of view (control grid ∝ size,
        velocity scale ∝ 1/size); at the base size, the base settings themselves."""
        base = ForwardProcess.from_preset(self.preset()) if initial is None else initial.forward_process()
        if self.size == base.image_size and not self.control_size:
            return {} if initial is None else dict(initial.noise_overrides)
        ratio = self.size / base.image_size
        control = self.control_size or max(8, int(round(base.control_size * ratio)))
        return {"control_size": control, "velocity_scale": base.velocity_scale / ratio}
