"""``drdm models import``: a model file copied into the cache under a name, where the front ends offer it."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..models import load_checkpoint
from .download import cache_folder
from .files import is_model_file, load_model_file, model_paths, read_metadata, save_model
from .registry import REGISTRY, RegistryError


def import_checkpoint(source: str | os.PathLike, name: str | None = None, force: bool = False) -> tuple[Path, Path]:
    """Copy a model into the cache under ``name``, where the front ends offer it: an authors' ``.pth`` checkpoint
    (weights-only loading, converted to the project's format) or a ``.safetensors``/``.json`` model (e.g. made by
    ``drdm train``; its metadata, recovery-error table included, is kept).

    Returns the ``(.safetensors, .json)`` paths; refuses to overwrite an existing model unless ``force``.
    """
    source = Path(source)
    model = load_model_file(source) if is_model_file(source) else load_checkpoint(source)
    name = name or re.sub(r"^\d+_", "", model_paths(source)[0].stem)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name in REGISTRY:
        raise RegistryError(f"model name {name!r} is not allowed: use letters, digits, '.', '_', '-' "
                            f"and not a registry name ({', '.join(sorted(REGISTRY))})")
    weights, metadata = model_paths(cache_folder() / name)
    if weights.exists() and not force:
        raise RegistryError(f"model {name!r} already exists ({weights}); choose another --name or pass --force")
    model.name = name
    if is_model_file(source):
        kept = {k: v for k, v in read_metadata(source).items()
                if k not in ("name", "sha256", "created", "drdm_version", "format", "format_version")}
        return save_model(model, weights, **{**kept, "imported_from": str(model_paths(source)[0].resolve())})
    return save_model(model, weights, licence="as the source checkpoint",
                      trained_on=model.trained_on, source_file=str(source.resolve()), source_sha256=model.sha256,
                      training_command="(imported with: drdm models import)")
