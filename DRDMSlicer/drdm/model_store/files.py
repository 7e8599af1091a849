"""The project's model format: safetensors weights plus a JSON metadata file beside them.

``NAME.safetensors`` holds the RecResACNet state dict (float32, no pickling at all); ``NAME.json`` holds what
is needed to use the weights correctly and to trace where they came from::

    {"format": "drdm-model", "format_version": 1, "name": ..., "ndims": 2, "size": 128, "num_steps": 80,
     "width": 10, "embed_dim": 100, "in_channels": 1, "noise_preset": "cmr-2d", "noise_overrides": {},
     "intensity": "minmax-0-1", "trained_on": ..., "training_command": ..., "licence": ...,
     "drdm_version": ..., "sha256": <of the .safetensors file>, "created": <UTC ISO time>}

The same JSON is also stored in the safetensors header (key ``drdm``) so a lone weights file still loads.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from pathlib import Path

import torch

from ..models import INTENSITY_MINMAX, CheckpointError, DRDMModel, _first_line, file_digest, validate_metadata
from ..network import RecResACNet

FORMAT_NAME = "drdm-model"
FORMAT_VERSION = 1
WEIGHTS_SUFFIX = ".safetensors"
METADATA_SUFFIX = ".json"
RECOVERY_ERROR_KEY = "recovery_error"  # the measured table in the metadata (drdm.training.recovery_error)


def model_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(weights, metadata)`` paths for a ``.safetensors``, ``.json`` or suffix-less model path."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (WEIGHTS_SUFFIX, METADATA_SUFFIX) else path
    return stem.with_name(stem.name + WEIGHTS_SUFFIX), stem.with_name(stem.name + METADATA_SUFFIX)


def model_metadata(model: DRDMModel, **extra) -> dict:
    """The JSON metadata of ``model`` (without ``sha256``, which :func:`save_model` adds)."""
    from ..settings import VERSION

    network = model.network
    metadata = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "name": model.name, "ndims": model.ndims,
        "size": model.size, "num_steps": model.num_steps, "width": network.width, "embed_dim": network.embed_dim,
        "in_channels": network.in_channels, "noise_preset": model.noise_preset,
        "noise_overrides": dict(model.noise_overrides), "intensity": model.intensity, "trained_on": model.trained_on,
        "training_command": model.extra.get("training_command", ""), "licence": model.extra.get("licence", ""),
        "drdm_version": VERSION, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    metadata.update(extra)
    return metadata


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.partial-", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def save_model(model: DRDMModel, path: str | os.PathLike, **extra) -> tuple[Path, Path]:
    """Write ``model`` as ``NAME.safetensors`` + ``NAME.json`` (atomically); returns both paths.

    ``extra`` metadata entries (e.g. ``training_command``, ``licence``) are added to the JSON.
    """
    from safetensors.torch import save_file

    if not model.learned:
        raise ValueError(f"model {model.name!r} is a random field only: it has no weights to save")
    weights_path, metadata_path = model_paths(path)
    metadata = model_metadata(model, **extra)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.network.state_dict().items()}
    _atomic_write(weights_path, lambda name: save_file(state, name, metadata={"drdm": json.dumps(metadata, sort_keys=True)}))
    metadata["sha256"] = file_digest(weights_path)
    text = json.dumps(metadata, indent=2, sort_keys=True) + "\n"
    _atomic_write(metadata_path, lambda name: Path(name).write_text(text, encoding="utf-8"))
    return weights_path, metadata_path


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata of a model: the JSON file, or else the copy in the safetensors header."""
    weights_path, metadata_path = model_paths(path)
    if metadata_path.is_file():
        try:
            metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise CheckpointError(f"{metadata_path}: unreadable model metadata ({_first_line(error)})") from None
    elif weights_path.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(weights_path), framework="pt") as handle:
                header = (handle.metadata() or {}).get("drdm")
        except Exception as error:  # safetensors raises its own error types on foreign bytes
            raise CheckpointError(f"{weights_path}: not a safetensors file ({_first_line(error)})") from None
        if header is None:
            raise CheckpointError(f"{weights_path}: no DRDM metadata (neither {metadata_path.name} nor a 'drdm' header)")
        metadata = json.loads(header)
    else:
        raise CheckpointError(f"{weights_path}: no such file")
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{metadata_path}: not DRDM model metadata (missing \"format\": \"{FORMAT_NAME}\")")
    return metadata


def load_model_file(path: str | os.PathLike, device: torch.device | str = "cpu", check_hash: bool = True) -> DRDMModel:
    """Load a model saved by :func:`save_model` (give the ``.safetensors`` or the ``.json`` path).

    With ``check_hash`` the weights must match the ``sha256`` recorded in the JSON. Raises
    :class:`~drdm.models.CheckpointError` (a ``ValueError``) with a one-line reason.
    """
    from safetensors.torch import load_file

    weights_path, metadata_path = model_paths(path)
    metadata = read_metadata(path)
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: weights file missing (metadata {metadata_path.name} found)")
    sha256 = file_digest(weights_path)
    if check_hash and metadata.get("sha256") and metadata["sha256"] != sha256:
        raise CheckpointError(f"{weights_path}: sha256 {sha256[:12]}… does not match the metadata "
                              f"({metadata['sha256'][:12]}…): the weights were modified or belong to another model")
    try:
        state = load_file(str(weights_path))
    except Exception as error:
        raise CheckpointError(f"{weights_path}: not a safetensors file ({_first_line(error)})") from None
    try:
        network = RecResACNet(ndims=int(metadata["ndims"]), in_channels=int(metadata.get("in_channels", 1)),
                              num_steps=int(metadata["num_steps"]), embed_dim=int(metadata.get("embed_dim", 100)),
                              width=int(metadata.get("width", 10)))
        network.load_state_dict(state, strict=True)
    except (KeyError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{weights_path}: weights and metadata do not fit: {_first_line(error)}") from None
    network.eval().to(device)
    model = DRDMModel(network=network, ndims=network.ndims, size=int(metadata["size"]), num_steps=network.num_steps,
                      noise_preset=str(metadata["noise_preset"]), intensity=str(metadata.get("intensity", INTENSITY_MINMAX)),
                      name=str(metadata.get("name", weights_path.stem)), source=str(weights_path), sha256=sha256,
                      trained_on=str(metadata.get("trained_on", "")),
                      noise_overrides=dict(metadata.get("noise_overrides") or {}),
                      extra={k: metadata[k] for k in ("training_command", "licence", "created", "drdm_version") if k in metadata},
                      metadata=metadata)
    validate_metadata(model, weights_path)
    return model


def recovery_error_summary(metadata: dict) -> float | None:
    """The summary of the recovery-error table recorded in model metadata (``metadata["recovery_error"]``, written by
    :mod:`drdm.training.recovery_error`; 0 perfect, 1 no recovery), or ``None`` when it was never measured."""
    table = metadata.get(RECOVERY_ERROR_KEY)
    if not isinstance(table, dict) or not isinstance(table.get("summary"), (int, float)):
        return None
    return float(table["summary"])


def is_model_file(path: str | os.PathLike) -> bool:
    """True for paths in the project's format (``.safetensors`` or a ``.json`` beside one)."""
    return Path(path).suffix in (WEIGHTS_SUFFIX, METADATA_SUFFIX)
