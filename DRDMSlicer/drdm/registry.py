"""Model registry and cache: named models with URL, SHA-256 and licence; verified downloads.

Downloads stream to a temporary file in the cache folder with a progress callback, are checked against the
registry's SHA-256, and only then renamed into place; a mismatch deletes the file and raises. The cache is
``$DRDM_HOME/models`` (default ``~/.cache/drdm/models``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import DRDMError
from .models import BUNDLED_MODELS, MODEL_NAMES, bundled_model_path, drdm_home, file_sha256


class RegistryError(DRDMError):
    """A registry name, download or verification problem, explained in one line."""


@dataclass(frozen=True)
class RegistryEntry:
    """A downloadable model."""

    name: str
    filename: str
    url: str | None
    sha256: str | None
    licence: str
    description: str
    available: bool = True
    note: str = ""
    bundled: bool = False  # shipped inside the package: nothing to download


REGISTRY: dict[str, RegistryEntry] = {
    "cmr-2d": RegistryEntry(
        name="cmr-2d", filename=MODEL_NAMES["cmr-2d"],
        url="https://github.com/jianqingzheng/def_diff_rec/raw/main/models/cmr_recresacnet/000000_cmr_recresacnet.pth",
        sha256="c9e93ccbd99ad288bb1c961f980141d2c8c91115e8a5986d7a20a98f64ae8e93",
        licence="Apache-2.0 (authors' repository jianqingzheng/def_diff_rec)",
        description="the authors' published 2D cardiac MRI model (256², 80 levels)"),
    "lct-3d": RegistryEntry(
        name="lct-3d", filename="lct_recresacnet_3d.pth", url=None, sha256=None,
        licence="Apache-2.0 (authors' repository)", description="the authors' 3D lung CT model (128³)",
        available=False, note="its weights are not in the authors' public repository snapshot"),
    **{name: RegistryEntry(
        name=name, filename=f"{name}.safetensors", url=None, sha256=None, bundled=True,
        licence="Apache-2.0 (this project; trained on procedural phantoms)",
        description=f"small {name[-2:].upper()} demo model bundled with the package, trained by `drdm train`")
       for name in BUNDLED_MODELS},
}


def cache_folder() -> Path:
    return drdm_home() / "models"


def entry(name: str) -> RegistryEntry:
    if name not in REGISTRY:
        raise RegistryError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def cached_path(name: str) -> Path:
    """Where the model lives locally (the package folder for bundled models)."""
    item = entry(name)
    return bundled_model_path(name) if item.bundled else cache_folder() / item.filename


def fetch(name: str, progress: Callable[[int, int | None], None] | None = None, url: str | None = None,
          force: bool = False) -> Path:
    """Download a registry model into the cache (verified) and return its path.

    ``progress(bytes_done, bytes_total_or_None)`` is called as data arrives. ``url`` overrides the registry
    URL (mirrors, tests). An already cached file is reused only if its hash matches.
    """
    item = entry(name)
    if not item.available:
        raise RegistryError(f"model {name!r} is not available: {item.note}")
    if item.bundled:
        if not verify(name):
            raise RegistryError(f"bundled model {name!r} is missing or modified in this installation ({cached_path(name)})")
        return cached_path(name)
    target = cached_path(name)
    if target.is_file() and not force:
        if file_sha256(target) == item.sha256:
            return target
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(prefix=f".{target.name}.partial-", dir=target.parent)
    temporary = Path(temporary_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url or item.url, timeout=60) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            while chunk := response.read(1 << 16):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        if digest.hexdigest() != item.sha256:
            raise RegistryError(f"download of {name!r} is corrupt or tampered with: sha256 {digest.hexdigest()} "
                                f"instead of {item.sha256}; the file was deleted")
        os.replace(temporary, target)
    except (urllib.error.URLError, OSError) as error:
        raise RegistryError(f"download of {name!r} failed: {getattr(error, 'reason', error)}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return target


def verify(name: str) -> bool:
    """True when the cached file exists and matches the registry hash (bundled: the hash in its JSON)."""
    item = entry(name)
    path = cached_path(name)
    if not path.is_file():
        return False
    if item.bundled:
        from .model_files import read_metadata

        return file_sha256(path) == read_metadata(path).get("sha256")
    return file_sha256(path) == item.sha256


def import_checkpoint(source: str | os.PathLike, name: str | None = None, force: bool = False) -> tuple[Path, Path]:
    """Convert an authors' ``.pth`` checkpoint (weights-only loading) into the project's format in the cache.

    Returns the ``(.safetensors, .json)`` paths; refuses to overwrite an existing model unless ``force``.
    """
    import re

    from .model_files import model_paths, save_model
    from .models import load_checkpoint

    source = Path(source)
    model = load_checkpoint(source)
    name = name or re.sub(r"^\d+_", "", source.stem)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name in REGISTRY:
        raise RegistryError(f"model name {name!r} is not allowed: use letters, digits, '.', '_', '-' "
                            f"and not a registry name ({', '.join(sorted(REGISTRY))})")
    weights, metadata = model_paths(cache_folder() / name)
    if weights.exists() and not force:
        raise RegistryError(f"model {name!r} already exists ({weights}); choose another --name or pass --force")
    model.name = name
    return save_model(model, weights, licence="as the source checkpoint",
                      trained_on=model.trained_on, source_file=str(source.resolve()), source_sha256=model.sha256,
                      training_command="(imported with: drdm models import)")
