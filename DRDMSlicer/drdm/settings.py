"""The user-facing deformation settings and their defaults, in one place (no torch: Slicer reads it at load), and the
package version.

Every front end takes its defaults from :data:`DEFAULTS`: the CLI's argparse defaults, ``deform_image``,
``DeformationLogic.generate``, the Slicer module's parameter node and the web page. The low-level
:func:`drdm.sampler.generate` keeps its own documented contract (reference mode, the authors' schedule).
"""

from __future__ import annotations

import math
import numbers
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from .errors import DRDMError

VERSION = "0.1.0"  # the drdm package version (pyproject.toml's): ``drdm --version``, recorded in every model file
MODES = ("reference", "diffeomorphic")
SPEEDS = ("faithful", "fast", "faster")
DEVICES = ("auto", "cpu", "cuda")
SLICE_MODES = ("coherent", "independent")  # 2D model on a 3D volume: one smooth field, or the authors' per-slice way
PRECISIONS = ("exact", "tf32")  # float32 arithmetic of the network on a GPU: TF32 off (the reference) or allowed
INTERPOLATIONS = ("linear", "bspline", "nearest")  # how the deformed image is resampled (SimpleITK interpolators)
LABEL_METHODS = ("nearest", "onehot")  # how label maps are warped: nearest neighbour, or per-label linear + arg-max
SEED_RANGE = 2**31  # a drawn seed lies in 0 … SEED_RANGE - 1 (fits every front end's integer field)
TORCH_SEEDS = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed takes: every sample's seed must lie in it
MAX_INTERACTIVE_COUNT = 100  # samples one click may ask for in the Slicer module and the web app (the CLI: no limit)
GRAPH_MAX_BATCH = 4  # the CUDA-graph recovery step is chosen for 2D sampler batches up to this size (see cuda_graph_by_rule)


class SettingsError(DRDMError):
    """Settings that cannot be used together or at all; the message says why in one line."""


def look_up_option(value: object, choices: Sequence[str], what: str) -> str:
    """``value`` when it is one of ``choices``, else :class:`SettingsError` ``unknown <what> 'x'; choose one of a, b``:
    the one message every front end shows for a word it does not know."""
    if isinstance(value, str) and value in choices:
        return value
    raise SettingsError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


def check_level(level: int, num_steps: int) -> int:
    """The one level-range rule: a start level T′ lies in 0 … ``num_steps`` (the model's T); else SettingsError."""
    if not 0 <= int(level) <= int(num_steps):
        raise SettingsError(f"level {level} is out of range: choose 0 to {num_steps}")
    return int(level)


def draw_seed() -> int:
    """The one random seed draw (a seed left unset): uniform in 0 … 2³¹ − 1, recorded with every result."""
    return secrets.randbelow(SEED_RANGE)


class LevelledModel(Protocol):
    """What the settings need from a model (:class:`drdm.models.DRDMModel` has it): its number of levels T and
    its forward process, whose ``first_level`` is the default start level."""

    num_steps: int

    def forward_process(self): ...  # noqa: ANN201 (torch-free here: the process's type lives in drdm.noise)


@dataclass(frozen=True)
class DeformationSettings:
    """How a deformation is generated.

    Attributes:
        level: start level T′ of the recovery, 0 … T of the model; ``None``: the model's first level. It sets the
            starting noise of the recovery, which changes the draw more than its size (``magnitude`` sets the size).
        seed: seed of the first sample (``seed + k`` for sample k); ``None``: drawn at random and recorded.
        count: number of samples (≥ 1).
        mode: ``"diffeomorphic"`` (topology preserving, the default) or ``"reference"`` (the authors' sampler,
            which folds).
        speed: ``"fast"`` (20 network calls, the default) or ``"faithful"`` (the reference's 80).
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        slices: a 2D model on a 3D volume: ``"coherent"`` (the default: one deformation smooth through the
            slices, :mod:`drdm.physical.slice_coherence`) or ``"independent"`` (each slice its own deformation, the
            authors' way, for slice-wise training data). 2D images and 3D models ignore it.
        precision: the network's float32 arithmetic on an NVIDIA GPU: ``"exact"`` (the default: cuDNN's and
            cuBLAS's TF32 off; the published model within 1.4e-6 of the reference vectors on an H200, the tolerance is
            1e-5) or ``"tf32"`` (TF32 allowed: 1.1e-4 / 4.4e-4 from the vectors on the H200, reference / channels-last
            layout). Its speed-up and the change of the samples' statistics are waiting for a GPU measurement
            (``bash scripts/gpu_check.sh``). Identical on the CPU.
        magnitude: the size in mm (mean |u| over the image, or over where ``keep``/``only`` allow motion), reached
            by scaling the sample's velocities (:mod:`drdm.physical.steering`); ``None``: the model's own size.
        keep: label values of structures that are not deformed. only: label values of the structures that alone
            (with ``margin``) are deformed. margin: the smooth transition around them, mm.
        interpolation: how the deformed image is resampled: ``"linear"`` (the default), ``"bspline"`` or ``"nearest"``.
        label_method: how label maps are warped: ``"nearest"`` (the default) or ``"onehot"`` (per-label linear
            resampling and arg-max).
    """

    level: int | None = None
    seed: int | None = None
    count: int = 1
    mode: str = "diffeomorphic"
    speed: str = "fast"
    device: str = "auto"
    slices: str = "coherent"
    precision: str = "exact"
    magnitude: float | None = None
    keep: tuple[int, ...] = ()
    only: tuple[int, ...] = ()
    margin: float = 10.0
    interpolation: str = "linear"
    label_method: str = "nearest"

    def __post_init__(self) -> None:
        look_up_option(self.mode, MODES, "mode")
        look_up_option(self.speed, SPEEDS, "speed")
        look_up_option(self.device, DEVICES, "device")
        look_up_option(self.slices, SLICE_MODES, "slices")
        look_up_option(self.precision, PRECISIONS, "precision")
        look_up_option(self.interpolation, INTERPOLATIONS, "interpolation")
        look_up_option(self.label_method, LABEL_METHODS, "label method")
        object.__setattr__(self, "keep", tuple(int(value) for value in self.keep))
        object.__setattr__(self, "only", tuple(int(value) for value in self.only))
        if isinstance(self.count, bool) or not isinstance(self.count, int) and not str(self.count).isdigit() \
                or int(self.count) < 1:
            raise SettingsError(f"count must be a whole number of samples, at least 1, got {self.count!r}")
        object.__setattr__(self, "count", int(self.count))
        if self.seed is not None:
            if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) \
                    or not TORCH_SEEDS[0] <= int(self.seed) <= TORCH_SEEDS[1] - (self.count - 1):
                raise SettingsError(f"the seed must be a whole number from {TORCH_SEEDS[0]} to {TORCH_SEEDS[1]} "
                                    f"(for all {self.count} samples), got {self.seed!r}")
            object.__setattr__(self, "seed", int(self.seed))  # numpy integers too
        if self.level is not None and int(self.level) < 0:
            raise SettingsError(f"level {self.level} is negative")
        if self.magnitude is not None and not 0 < float(self.magnitude) < math.inf:
            raise SettingsError(f"the size must be a positive number of mm, got {self.magnitude}")
        if not 0 < float(self.margin) < math.inf:
            raise SettingsError(f"the margin must be a positive number of mm, got {self.margin}")
        if (self.magnitude is not None or self.keep or self.only) and self.mode != "diffeomorphic":
            raise SettingsError("a size (magnitude) or regions (keep, only) need mode 'diffeomorphic'")

    def start_level(self, num_steps: int, first_level: int) -> int:
        """The start level for a model with ``num_steps`` levels (``first_level`` when none was chosen);
        raises :class:`SettingsError` outside 0 … ``num_steps`` (:func:`check_level`)."""
        return check_level(first_level if self.level is None else int(self.level), num_steps)

    def for_model(self, model: LevelledModel) -> DeformationSettings:
        """These settings made concrete for ``model``: the level (the model's first level when unset, range
        checked) and the seed (:func:`draw_seed` when unset, once: every sample of the request counts from it)."""
        level = self.start_level(model.num_steps, model.forward_process().first_level)
        return replace(self, level=level, seed=draw_seed() if self.seed is None else int(self.seed))

    def seeds(self) -> list[int]:
        """The seeds of the ``count`` samples: ``seed … seed + count − 1`` (the seed must be set: :meth:`for_model`)."""
        if self.seed is None:
            raise SettingsError("no seed yet: settings.for_model(model) draws one")
        return [int(self.seed) + k for k in range(int(self.count))]

    def but(self, **changes: object) -> DeformationSettings:
        """A copy with ``changes`` (checked like any new settings)."""
        return replace(self, **changes)


DEFAULTS = DeformationSettings()
SETTING_NAMES = tuple(DeformationSettings.__dataclass_fields__)


def settings_from(options: dict[str, object]) -> tuple[DeformationSettings, dict[str, object]]:
    """The :class:`DeformationSettings` named in a caller's keyword ``options`` (the others at their defaults), and
    the options that are not settings (``progress``, ``cancel``, ``slice_axis``, …), for the Python API."""
    chosen = {name: value for name, value in options.items() if name in SETTING_NAMES}
    return DeformationSettings(**chosen), {name: value for name, value in options.items() if name not in SETTING_NAMES}
AUGMENT_BASE_SEED = 0  # drdm augment / drdm.augment number their jobs from this seed when none is given: a data
# set's jobs must be numbered alike at every run, or a resumed run would not find the samples it already made


def slices_option_applies(model_ndims: int, shape: tuple[int, ...] | list[int]) -> bool:
    """True when the ``slices`` choice matters: a 2D model on a 3D volume more than one voxel thick on every axis."""
    return int(model_ndims) == 2 and len(shape) == 3 and min(int(n) for n in shape) > 1


def cuda_graph_by_rule(device_type: str, ndims: int, batch: int) -> bool:
    """Whether the sampler records its recovery step as a CUDA graph when the caller does not say (the rule).

    On for a 2D model on CUDA at sampler batches of 1 … :data:`GRAPH_MAX_BATCH`; off for 3D models, larger batches
    and the CPU. The figures (NVIDIA H200, torch 2.11, ``benchmarks/results/gpu_nvidia-h200_2026-11-28.md``; samples
    equal to the eager ones in every case): 2D 256² batch 1 is 1.6–3.5× faster (reference faithful 1.21 → 0.35 s,
    diffeomorphic faithful 1.92 → 0.86 s, fast 0.47 → 0.25 s, faster 0.21 → 0.14 s); batch 8 fast 3 % slower
    (0.482 → 0.496 s a batch), batch 32 13 % slower; 3D 64³ and 128³ batch 1 fast 6 % and 9 % slower.
    The threshold 4 is interpolated, not measured: the eager batch costs the same at 1 and 8 (0.467 / 0.482 s,
    launch-bound) while the graph's grows about linearly (0.249 → 0.496 s), which puts the crossover near 7; 4
    keeps a margin (about 1.3× faster by that line). Batches 2–7 and 2D sizes other than 256² are unmeasured;
    ``benchmarks/gpu_check.py`` measures batches 2, 4 and 8 to check the threshold.
    """
    return device_type == "cuda" and int(ndims) == 2 and 1 <= int(batch) <= GRAPH_MAX_BATCH


def use_cuda_graph(choice: bool | None, device_type: str, ndims: int, batch: int) -> bool:
    """``choice`` when given (an explicit True/False is obeyed), else :func:`cuda_graph_by_rule`."""
    return cuda_graph_by_rule(device_type, ndims, batch) if choice is None else bool(choice)
