"""Loading DRDM models: the network plus the metadata needed to use it correctly.

:func:`load_checkpoint` reads the authors' reference ``.pth`` state dicts with PyTorch's weights-only
unpickler (nothing but tensors and plain containers is ever unpickled) and fills the metadata the file
lacks from the reference configuration (SPEC §3.1 and §7).
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import DRDMError
from .network import RecResACNet
from .noise import PRESETS, ForwardProcess

# Metadata of the reference configurations: the .pth files carry weights only.
REFERENCE_METADATA = {
    2: dict(size=256, noise_preset="cmr-2d", trained_on="ACDC / M&Ms cardiac MRI slices (authors' training set)"),
    3: dict(size=128, noise_preset="lct-3d", trained_on="lung CT volumes (authors' training set)"),
}
METADATA_KEYS = ("size", "noise_preset", "intensity", "name", "trained_on", "noise_overrides")
INTENSITY_MINMAX = "minmax-0-1"  # per image: (I - min) / (max - min + 1e-7), background ≈ 0
_REQUIRED_KEYS = ("time_embed.weight", "te1.0.weight", "b1.0.conv0.weight", "conv_out.weight", "conv_out.bias")


class CheckpointError(DRDMError):
    """A file that is not a loadable DRDM checkpoint."""


@dataclass
class DRDMModel:
    """A recovery network with what is needed to use it, or a random-field-only model (``network`` is ``None``).

    Attributes:
        network: the :class:`RecResACNet` (eval mode); ``None`` for a random-field-only model, whose deformation
            is the forward process's diffeomorphic random field with no learned recovery (:func:`random_field_model`).
        ndims: 2 or 3.
        size: side of the square/cubic working grid the model was trained on (voxels).
        num_steps: number of diffusion levels T.
        noise_preset: name of the :class:`ForwardProcess` preset it was trained with.
        intensity: intensity normalisation expected on input (``"minmax-0-1"``).
        name, source, sha256: where it came from.
        metadata: the model file's JSON metadata (provenance, recovery-error table, ...); empty for ``.pth`` files.
        field_device: where a random-field-only model computes (a network's device wins otherwise).
    """

    network: RecResACNet | None
    ndims: int
    size: int
    num_steps: int
    noise_preset: str
    intensity: str = INTENSITY_MINMAX
    name: str = "custom"
    source: str = ""
    sha256: str = ""
    trained_on: str = ""
    noise_overrides: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    field_device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def learned(self) -> bool:
        """True when a trained network recovers the deformation (False: random field only)."""
        return self.network is not None

    @property
    def device(self) -> torch.device:
        return self.field_device if self.network is None else next(self.network.parameters()).device

    def forward_process(self) -> ForwardProcess:
        """The forward deformation process this model was trained with."""
        return ForwardProcess.from_preset(self.noise_preset, **{"image_size": self.size, "num_steps": self.num_steps,
                                                                **self.noise_overrides})

    def to(self, device: torch.device | str) -> DRDMModel:
        if self.network is not None:
            self.network.to(device)
        self.field_device = torch.device(device)
        return self


def file_digest(path: str | Path, algorithm: str = "sha256", prefix: bytes = b"") -> str:
    """Hex digest of a file, read in chunks: SHA-256 by default; ``prefix`` is hashed first (a git blob id is
    ``file_digest(path, "sha1", b"blob <size>\\0")``). The one file hasher of the engine."""
    digest = hashlib.new(algorithm, prefix)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "unreadable"


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower():
            raise CheckpointError(
                f"{path}: refused: the file needs unpickling of arbitrary Python objects, which is unsafe "
                "(only weights-only checkpoints are loaded)"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({_first_line(error)})") from None
    except Exception as error:  # torch.load raises many types on foreign bytes
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(error).__name__}: {_first_line(error)})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        metadata = state.get("metadata", {})
        if not isinstance(metadata, dict):
            raise CheckpointError(f"{path}: 'metadata' must be a dictionary")
        state = state["state_dict"]
    else:
        metadata = {}
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a DRDM checkpoint (expected a state dict of tensors)")
    missing = [k for k in _REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a DRDM RecResACNet checkpoint (missing keys: {', '.join(missing)})")
    return state, metadata


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> DRDMModel:
    """Load a DRDM reference checkpoint (a RecResACNet state dict, ``.pth``) as a :class:`DRDMModel`.

    The dimensionality, number of steps and embedding width are read from the tensor shapes; the working
    size, noise preset and intensity normalisation come from the reference configuration for that
    dimensionality, unless the file is ``{"state_dict": ..., "metadata": {...}}`` (:func:`save_checkpoint`),
    whose metadata wins. Raises :class:`CheckpointError` (a ``ValueError``) for anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    state, stored = _read_state_dict(path)
    ndims = state["conv_out.weight"].dim() - 2
    if ndims not in REFERENCE_METADATA or state["conv_out.weight"].shape[0] != ndims:
        raise CheckpointError(f"{path}: conv_out has an unexpected shape {tuple(state['conv_out.weight'].shape)}")
    num_steps, embed_dim = state["time_embed.weight"].shape
    width, in_channels = state["b1.0.conv0.weight"].shape[:2]
    network = RecResACNet(ndims=ndims, in_channels=in_channels, num_steps=num_steps, embed_dim=embed_dim, width=width)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit RecResACNet: {_first_line(error)}") from None
    network.eval().to(device)
    meta = {**REFERENCE_METADATA[ndims], **{k: v for k, v in stored.items() if k in METADATA_KEYS}}
    model = DRDMModel(network=network, ndims=ndims, size=int(meta["size"]), num_steps=num_steps,
                      noise_preset=str(meta["noise_preset"]), intensity=meta.get("intensity", INTENSITY_MINMAX),
                      name=str(meta.get("name", path.stem)), source=str(path), sha256=file_digest(path),
                      trained_on=str(meta["trained_on"]), noise_overrides=dict(meta.get("noise_overrides") or {}))
    validate_metadata(model, path)
    return model


def validate_metadata(model: DRDMModel, path: str | Path) -> None:
    """Raise :class:`CheckpointError` when the metadata cannot describe this network."""
    preset = PRESETS.get(model.noise_preset)
    if preset is None or preset["ndims"] != model.ndims:
        raise CheckpointError(f"{path}: noise preset {model.noise_preset!r} does not fit a {model.ndims}D network")
    if model.size % 8 or model.size < 8:
        raise CheckpointError(f"{path}: working size {model.size} is not a positive multiple of 8")
    try:
        model.forward_process()
    except TypeError as error:
        raise CheckpointError(f"{path}: bad noise_overrides {model.noise_overrides}: {_first_line(error)}") from None


def save_checkpoint(model: DRDMModel, path: str | Path) -> Path:
    """Save weights and metadata as a weights-only loadable ``.pth`` (``{"state_dict", "metadata"}``)."""
    if not model.learned:
        raise ValueError(f"model {model.name!r} is a random field only: it has no weights to save")
    path = Path(path)
    metadata = {"size": model.size, "noise_preset": model.noise_preset, "intensity": model.intensity,
                "name": model.name, "trained_on": model.trained_on, "noise_overrides": dict(model.noise_overrides)}
    state = {k: v.detach().cpu().contiguous() for k, v in model.network.state_dict().items()}
    torch.save({"state_dict": state, "metadata": metadata}, path)
    return path


def untrained_model(ndims: int = 2, size: int | None = None, seed: int = 0, device: torch.device | str = "cpu",
                    width: int = 10, noise_overrides: dict | None = None) -> DRDMModel:
    """A randomly initialised model (reference configuration unless ``width``/``noise_overrides`` say otherwise).

    For tests, smoke runs and as the starting point of training.
    """
    if ndims not in REFERENCE_METADATA:
        raise ValueError(f"ndims must be 2 or 3, got {ndims}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = RecResACNet(ndims=ndims, width=width).eval().to(device)
    meta = REFERENCE_METADATA[ndims]
    return DRDMModel(network=network, ndims=ndims, size=size or meta["size"], num_steps=network.num_steps,
                     noise_preset=meta["noise_preset"], name=f"untrained-{ndims}d", trained_on="nothing (random weights)",
                     noise_overrides=dict(noise_overrides or {}))


# Random field only (no learned recovery): the forward process's diffeomorphic field at level T', no network.
RANDOM_FIELD_MODELS: dict[str, dict] = {
    "random-field-2d": dict(ndims=2, noise_preset="cmr-2d"),
    "random-field-3d": dict(ndims=3, noise_preset="lct-3d"),
}


def random_field_model(name: str, device: torch.device | str = "cpu") -> DRDMModel:
    """A random-field-only model (``random-field-2d`` / ``random-field-3d``): no network, no learned recovery.

    Generating with it gives the forward process's diffeomorphic (fold-free) random field at level T' on the
    preset's working grid (256² CMR settings in 2D, 128³ lung-CT settings in 3D), with every output of a
    learned model (deformed image and labels, transform, det J, statistics). Its recovery error is 1 by
    construction (it recovers nothing).
    """
    if name not in RANDOM_FIELD_MODELS:
        raise CheckpointError(f"unknown random-field model {name!r}; choose one of {', '.join(RANDOM_FIELD_MODELS)}")
    spec = RANDOM_FIELD_MODELS[name]
    preset = ForwardProcess.from_preset(spec["noise_preset"])
    return DRDMModel(network=None, ndims=spec["ndims"], size=preset.image_size, num_steps=preset.num_steps,
                     noise_preset=spec["noise_preset"], name=name, source="built in",
                     trained_on="nothing: random field only (no learned recovery)",
                     field_device=torch.device(device))


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``; a clear ``ValueError`` if CUDA is missing."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda: no CUDA GPU is available to PyTorch here")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)
