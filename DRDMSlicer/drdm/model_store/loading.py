"""Loading a model: a name, a file, a loaded model or ``None`` (the default) → a :class:`~drdm.models.DRDMModel`
(:func:`load_model`); and the one call of every front end for an image, ``--model auto`` included
(:func:`load_for_image`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..models import RANDOM_FIELD_MODELS, CheckpointError, DRDMModel, load_checkpoint, random_field_model, resolve_device
from .choice import ModelChoice, resolve_model
from .download import cache_folder, cached_path
from .files import is_model_file, load_model_file
from .registry import BUNDLED_MODELS, DEFAULT_BUNDLED_MODEL, REGISTRY, bundled_model_path


def find_default_checkpoint() -> Path | None:
    """The default model file: ``$DRDM_MODEL`` when set, else the bundled ``cmr-2d`` (``None`` only when the
    installation lacks it)."""
    env = os.environ.get("DRDM_MODEL")
    if env:
        return Path(env)
    bundled = bundled_model_path(DEFAULT_BUNDLED_MODEL)
    return bundled if bundled.is_file() else None


def _load_path(path: Path, device: torch.device | str) -> DRDMModel:
    return load_model_file(path, device) if is_model_file(path) else load_checkpoint(path, device=device)


def load_model(spec: str | os.PathLike | DRDMModel | None, device: str | torch.device = "auto") -> DRDMModel:
    """The one call of every front end: a name, a file, a loaded model or ``None`` (the default model) →
    a :class:`DRDMModel` on ``device`` (``auto``: CUDA when present, ``cpu``, ``cuda`` or a torch device).

    Raises a :class:`~drdm.errors.DRDMError` (a ``ValueError``) with a message for the user."""
    target = resolve_device(device) if isinstance(device, str) else torch.device(device)
    if isinstance(spec, DRDMModel):
        return spec.to(target)
    return load_model_spec(spec, target)


def load_model_spec(spec: str | os.PathLike | None, device: torch.device | str = "cpu") -> DRDMModel:
    """A model from a file (``.pth`` reference checkpoint or ``.safetensors``/``.json`` model), a name
    (the bundled ``cmr-2d``, ``random-field-2d``/``random-field-3d``, or one made by ``drdm models import`` or
    ``drdm train`` in the cache) or, for ``None``, the default model: ``$DRDM_MODEL`` (a name or a file) when set,
    else the bundled ``cmr-2d``.

    Raises :class:`CheckpointError` (a ``ValueError``) with a message for the user.
    """
    if spec is None or not str(spec):
        if os.environ.get("DRDM_MODEL"):
            return load_model_spec(os.environ["DRDM_MODEL"], device)  # a name or a file
        path = find_default_checkpoint()
        if path is None:
            raise CheckpointError(f"no model given and the bundled default model is missing from this installation "
                                  f"({bundled_model_path(DEFAULT_BUNDLED_MODEL)}): pass `model`")
        return _load_path(path, device)
    name = str(spec)
    if name in RANDOM_FIELD_MODELS:
        return random_field_model(name, device)
    item = REGISTRY.get(name)
    if item is not None and not item.bundled:  # a registry download
        if not item.available:
            raise CheckpointError(f"model {name!r} is not available: {item.note}")
        path = cached_path(name)
        if not path.is_file():
            raise CheckpointError(f"model {name!r} is not downloaded yet (expected {path}); run: drdm models fetch {name}")
        return _load_path(path, device)
    if name in BUNDLED_MODELS:
        path = bundled_model_path(name)
        if not path.is_file():
            raise CheckpointError(f"bundled model {name!r} is missing from this installation ({path})")
        return _load_path(path, device)
    imported = cache_folder() / f"{name}.safetensors"
    if "/" not in name and os.sep not in name and not Path(name).exists() and imported.is_file():
        return _load_path(imported, device)
    return _load_path(Path(name), device)


def load_for_image(spec: str | os.PathLike | DRDMModel | None, image: Any | Callable[[], Any],
                   device: str | torch.device = "auto") -> tuple[DRDMModel, ModelChoice]:
    """The model ``spec`` means for ``image`` (a SimpleITK image, or a function returning it, called only for
    ``auto``), loaded on ``device``, and how it was chosen: ``auto``/``None`` is decided from the image
    (:func:`drdm.model_store.choice.choose_model`, with its reason), a name or file is obeyed, a loaded model is moved
    to ``device``. Front ends show ``choice.line(model.name)``.

    Raises a :class:`~drdm.errors.DRDMError` (a ``ValueError``) with a message for the user."""
    if isinstance(spec, DRDMModel):
        return load_model(spec, device), ModelChoice(spec.name)
    choice = resolve_model(spec, image)
    return load_model(choice.spec, device), choice
