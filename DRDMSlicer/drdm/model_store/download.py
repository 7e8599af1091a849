"""Downloads and the model cache: where a model lives locally, fetching a registry download, verifying it.

Downloads stream to a temporary file in the cache folder with a progress callback, are checked against the
catalogue's git blob id (or SHA-256), and only then are renamed (or converted) into place; a mismatch deletes
the file and raises. The cache is ``$DRDM_HOME/models`` (default ``~/.cache/drdm/models``).
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..models import CheckpointError, file_digest, load_checkpoint
from .files import model_paths, read_metadata, save_model
from .registry import REGISTRY, RegistryEntry, RegistryError, bundled_model_path, entry


def drdm_home() -> Path:
    """Model cache folder: ``$DRDM_HOME`` or ``~/.cache/drdm``."""
    return Path(os.environ.get("DRDM_HOME", Path.home() / ".cache" / "drdm"))


def cache_folder() -> Path:
    """Where downloads and the user's own models (``drdm train``, ``drdm models import``) are kept."""
    return drdm_home() / "models"


def cached_path(name: str) -> Path:
    """Where the model lives locally (the package folder for bundled models)."""
    item = entry(name)
    if not item.learned:
        raise RegistryError(f"model {name!r} is built in (random field only): it has no file")
    return bundled_model_path(name) if item.bundled else cache_folder() / item.filename


def git_blob_id(path: str | os.PathLike) -> str:
    """The git blob id of a file: SHA-1 of ``b"blob <size>\\0" + bytes`` (what ``git hash-object`` prints)."""
    return file_digest(path, "sha1", f"blob {Path(path).stat().st_size}\0".encode())


def download_needed(name: str) -> bool:
    """True for a registry download (``lct-3d``) that is not in the cache, verified, yet; False for everything else
    (bundled and built-in models, files, cached names, unknown or unavailable names)."""
    item = REGISTRY.get(str(name))
    return (item is not None and not item.bundled and item.learned and item.available
            and not verify(item.name))


class DownloadCancelled(RegistryError):
    """A download stopped by its ``cancel`` callback; nothing was kept."""


def _download(name: str, url: str, target: Path, progress: Callable[[int, int | None], None] | None,
              cancel: Callable[[], bool] | None) -> None:
    """Stream ``url`` into ``target`` (a temporary file), calling ``progress`` and polling ``cancel`` per chunk."""
    try:
        with open(target, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            while chunk := response.read(1 << 16):
                if cancel is not None and cancel():
                    raise DownloadCancelled(f"download of {name!r} cancelled; nothing was kept")
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except (urllib.error.URLError, OSError) as error:
        raise RegistryError(f"download of {name!r} failed: {getattr(error, 'reason', error)}") from None


def _check_download(item: RegistryEntry, path: Path) -> None:
    """Refuse a download whose git blob id / sha256 is not the registry's (one line, the caller deletes it)."""
    if item.git_blob is not None:
        found = git_blob_id(path)
        if found != item.git_blob:
            raise RegistryError(f"download of {item.name!r} is wrong, truncated or tampered with: git blob {found} "
                                f"instead of {item.git_blob}; nothing was kept")
    elif (found := file_digest(path)) != item.sha256:
        raise RegistryError(f"download of {item.name!r} is corrupt or tampered with: sha256 {found} "
                            f"instead of {item.sha256}; the file was deleted")


def _convert(item: RegistryEntry, checkpoint: Path, url: str, target: Path) -> None:
    """Load a checkpoint that :func:`_check_download` verified (so its blob id is the entry's) weights-only and save
    it as ``target`` (``.safetensors`` + JSON; the loader's SHA-256 of the file is recorded, nothing is read again)."""
    try:
        model = load_checkpoint(checkpoint)
    except CheckpointError as error:
        raise RegistryError(f"download of {item.name!r} is not a DRDM checkpoint ({error}); nothing was kept") from None
    if item.ndims is not None and model.ndims != item.ndims:
        raise RegistryError(f"download of {item.name!r} is a {model.ndims}D network, not the {item.ndims}D model; "
                            "nothing was kept")
    model.name = item.name
    model.trained_on = item.trained_on or model.trained_on
    save_model(model, target, licence=item.licence, source_url=url, source_git_blob=item.git_blob,
               source_sha256=model.sha256, source_bytes=checkpoint.stat().st_size,
               description=item.description)


def fetch(name: str, progress: Callable[[int, int | None], None] | None = None, url: str | None = None,
          force: bool = False, cancel: Callable[[], bool] | None = None) -> Path:
    """Download a registry model into the cache (verified) and return its path.

    ``progress(bytes_done, bytes_total_or_None)`` is called as data arrives; ``cancel()`` returning True stops the
    download (:class:`DownloadCancelled`). ``url`` overrides the registry URL (mirrors, tests). The file is checked
    against the registry's git blob id (or SHA-256) before anything is kept; an authors' ``.pth`` entry
    (:attr:`RegistryEntry.converted`) is then loaded weights-only and saved in the project's format with its
    SHA-256, blob id and size in the JSON beside it. A wrong file leaves nothing in the cache. An already cached
    model is reused only if it verifies.
    """
    item = entry(name)
    if not item.available:
        raise RegistryError(f"model {name!r} is not available: {item.note}")
    if not item.learned:
        raise RegistryError(f"model {name!r} is built in (random field only): there is nothing to download")
    if item.bundled:
        if not verify(name):
            raise RegistryError(f"bundled model {name!r} is missing or modified in this installation ({cached_path(name)})")
        return cached_path(name)
    target = cached_path(name)
    if not force and verify(name):
        return target
    for stale in model_paths(target) if item.converted else (target,):
        stale.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(prefix=f".{target.name}.partial-", dir=target.parent)
    os.close(handle)
    temporary = Path(temporary_name)
    source = url or item.url
    try:
        _download(name, source, temporary, progress, cancel)
        _check_download(item, temporary)
        if item.converted:
            _convert(item, temporary, source, target)
        else:
            os.replace(temporary, target)
    except BaseException:
        if item.converted:
            for partial in model_paths(target):
                partial.unlink(missing_ok=True)
        raise
    finally:
        temporary.unlink(missing_ok=True)
    return target


def verify(name: str) -> bool:
    """True when the cached file exists and matches the registry hash (bundled: the hash in its JSON; built-in
    random-field choices: always)."""
    item = entry(name)
    if not item.learned:
        return True
    path = cached_path(name)
    if not path.is_file():
        return False
    if item.bundled or item.converted:
        try:
            metadata = read_metadata(path)
        except CheckpointError:
            return False
        if item.converted and metadata.get("source_git_blob") != item.git_blob:
            return False
        return file_digest(path) == metadata.get("sha256")
    return file_digest(path) == item.sha256
