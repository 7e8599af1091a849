"""Confined file access of ``drdm web``: typed paths inside ``--data-dir``, uploads in a private folder.

A path typed in the page is resolved inside the data folder; an absolute path elsewhere, any ``..`` and a
symbolic link that leads outside are refused with a one-line reason, before anything is opened. Uploads are
written under names the app makes into an owner-only temporary folder that is removed at exit.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from drdm.physical.io import InputError

DEFAULT_MAX_UPLOAD_MB = 2048
WSLINK_MAX_MB = 4096  # wslink accepts messages of at most 4 GiB from an authenticated client
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class DataFolder:
    """The folder whose files the page may open (``--data-dir``)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise InputError(f"--data-dir {folder}: not a folder")
        self.root = folder.resolve()

    def resolve(self, typed: str) -> Path:
        """The real path of ``typed`` (relative to the data folder, or absolute inside it); ``InputError`` if it
        is empty, contains ``..``, or leads outside the folder (directly or through a symbolic link)."""
        text = str(typed or "").strip()
        if not text:
            raise InputError("enter a path inside the data folder (or upload a file)")
        path = Path(text).expanduser() if text.startswith("~") else Path(text)
        if ".." in path.parts:
            raise InputError(f"{text}: '..' is not allowed; give a path inside the data folder")
        candidate = path if path.is_absolute() else self.root / path
        real = Path(os.path.realpath(candidate))
        if real.is_relative_to(self.root):
            return real
        if path.is_absolute() and not Path(os.path.abspath(candidate)).is_relative_to(self.root):
            raise InputError(f"{text}: outside the data folder; only files under the data folder can be opened")
        raise InputError(f"{text}: a symbolic link that leads outside the data folder; it is not opened")

    def shown(self, path: str | os.PathLike) -> str:
        """``path`` as the page shows it: relative to the data folder when inside it."""
        real = Path(os.path.realpath(path))
        return str(real.relative_to(self.root)) if real.is_relative_to(self.root) else Path(path).name


def safe_name(name: str, default: str = "upload") -> str:
    """A file name the app makes from a browser's: the last component, letters/digits/``._-`` only, no leading
    dot (``../x y.nii.gz`` → ``x_y.nii.gz``)."""
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).lstrip(".")
    return cleaned or default


def check_max_upload(max_mb: float) -> None:
    """``InputError`` unless 0 < ``max_mb`` ≤ 4096 (wslink's message limit)."""
    if not 0 < max_mb <= WSLINK_MAX_MB:
        raise InputError(f"--max-upload-mb {max_mb:g}: must be more than 0 and at most {WSLINK_MAX_MB} "
                         "(the WebSocket layer's limit)")


class UploadFolder:
    """An owner-only temporary folder for uploads (mode 0700), emptied per session and removed at exit."""

    def __init__(self, max_mb: float = DEFAULT_MAX_UPLOAD_MB) -> None:
        check_max_upload(max_mb)
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.path = Path(tempfile.mkdtemp(prefix="drdm-web-uploads-"))  # created 0700 by mkdtemp
        os.chmod(self.path, 0o700)

    def check_size(self, name: str, size: int) -> None:
        """``InputError`` naming the limit if ``size`` bytes are over it."""
        if size > self.max_bytes:
            raise InputError(f"{name}: {size / 1024**2:.1f} MB is over the upload limit of "
                             f"{self.max_bytes / 1024**2:.0f} MB (--max-upload-mb)")

    def write(self, name: str, content: bytes, kind: str) -> Path:
        """Write one upload as ``<kind>-<safe name>`` (replacing an earlier one of that kind); returns its path."""
        self.check_size(name, len(content))
        target = self.path / f"{kind}-{safe_name(name)}"
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
        return target

    def clear(self) -> None:
        """Delete every upload (a new session starts with none)."""
        for entry in self.path.iterdir():
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the folder and its files (at exit)."""
        shutil.rmtree(self.path, ignore_errors=True)


def upload_label(path: Path) -> str:
    """What a path field shows for an upload: ``upload: NAME`` (never the server-side folder)."""
    return f"upload: {upload_name(path)}"


def upload_name(path: Path) -> str:
    """The browser's (cleaned) file name of an upload written by :meth:`UploadFolder.write`."""
    return Path(path).name.split("-", 1)[1] if "-" in Path(path).name else Path(path).name
