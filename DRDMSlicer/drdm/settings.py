"""The user-facing deformation settings and their defaults, in one place (no torch: Slicer reads it at load).

Every front end takes its defaults from :data:`DEFAULTS`: the CLI's argparse defaults, ``deform_image``,
``DeformationLogic.generate``, the Slicer module's parameter node and the web page. The low-level
:func:`drdm.sampler.generate` keeps its own documented contract (reference mode, the authors' schedule).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import DRDMError

MODES = ("reference", "diffeomorphic")
SPEEDS = ("faithful", "fast", "faster")
DEVICES = ("auto", "cpu", "cuda")
SLICE_MODES = ("coherent", "independent")  # 2D model on a 3D volume: one smooth field, or the authors' per-slice way


class SettingsError(DRDMError):
    """Settings that cannot be used together or at all; the message says why in one line."""


@dataclass(frozen=True)
class DeformationSettings:
    """How a deformation is generated.

    Attributes:
        level: start level T' (magnitude), 0 … T of the model; ``None``: the model's first level.
        seed: seed of the first sample (``seed + k`` for sample k); ``None``: drawn at random and recorded.
        count: number of samples (≥ 1).
        mode: ``"diffeomorphic"`` (topology preserving, the default) or ``"reference"`` (the authors' sampler,
            which folds).
        speed: ``"fast"`` (20 network calls, the default) or ``"faithful"`` (the reference's 80).
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        slices: a 2D model on a 3D volume: ``"coherent"`` (the default: one deformation smooth through the
            slices, :mod:`drdm.slice_coherence`) or ``"independent"`` (each slice its own deformation, the
            authors' way, for slice-wise training data). 2D images and 3D models ignore it.
    """

    level: int | None = None
    seed: int | None = None
    count: int = 1
    mode: str = "diffeomorphic"
    speed: str = "fast"
    device: str = "auto"
    slices: str = "coherent"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SettingsError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.speed not in SPEEDS:
            raise SettingsError(f"unknown speed {self.speed!r}; choose one of {', '.join(SPEEDS)}")
        if self.device not in DEVICES:
            raise SettingsError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if self.slices not in SLICE_MODES:
            raise SettingsError(f"unknown slices {self.slices!r}; choose one of {', '.join(SLICE_MODES)}")
        if int(self.count) < 1:
            raise SettingsError("the number of samples must be at least 1")
        if self.level is not None and int(self.level) < 0:
            raise SettingsError(f"level {self.level} is negative")

    def start_level(self, num_steps: int, first_level: int) -> int:
        """The start level for a model with ``num_steps`` levels (``first_level`` when none was chosen);
        raises :class:`SettingsError` outside 0 … ``num_steps``."""
        level = first_level if self.level is None else int(self.level)
        if not 0 <= level <= num_steps:
            raise SettingsError(f"level {level} is out of range: choose 0 to {num_steps}")
        return level


DEFAULTS = DeformationSettings()


def slices_option_applies(model_ndims: int, shape: tuple[int, ...] | list[int]) -> bool:
    """True when the ``slices`` choice matters: a 2D model on a 3D volume more than one voxel thick on every axis."""
    return int(model_ndims) == 2 and len(shape) == 3 and min(int(n) for n in shape) > 1
