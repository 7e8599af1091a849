"""The private folder of ``drdm web``: uploads from the browser and the copies that typed paths are read from.

One owner-only (0700) temporary folder per server, ``drdm-web-uploads-*``, holding a lock file that the server keeps
locked while it runs. It is emptied for each new person and removed at exit; a server that was killed leaves it
behind, and the next start removes such leftovers: folders with that prefix, owned by this user, not a symbolic
link, holding a lock file that nobody holds locked. (A folder without a lock file is left alone: it may belong to a
server of an older version that is still running.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from drdm.physical.io import InputError

from .files import safe_name

DEFAULT_MAX_UPLOAD_MB = 2048
WSLINK_MAX_MB = 4096  # wslink's chunk header counts message sizes in uint32
PREFIX = "drdm-web-uploads-"
LOCK = ".lock"


def check_max_upload(max_mb: float) -> None:
    """``InputError`` unless 0 < ``max_mb`` < 4096 (wslink's chunk header counts sizes in uint32)."""
    if not 0 < max_mb < WSLINK_MAX_MB:
        raise InputError(f"--max-upload-mb {max_mb:g}: must be more than 0 and less than {WSLINK_MAX_MB} "
                         "(the WebSocket layer's limit)")


def remove_leftovers(parent: str | os.PathLike | None = None) -> list[Path]:
    """Remove the upload folders that killed servers of this user left in ``parent`` (default: the temporary
    folder); returns what was removed. Another user's folders, links and live servers' folders are left alone."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue
        if _abandoned(Path(entry.path)):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _abandoned(folder: Path) -> bool:
    """True when ``folder`` has a lock file that no running server holds locked."""
    try:
        descriptor = os.open(folder / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False  # no lock file (an older version's folder, or one being created right now): left alone
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a live server holds it
    finally:
        os.close(descriptor)  # closing releases the lock taken for the check
    return True


class UploadFolder:
    """An owner-only temporary folder for uploads and private copies (mode 0700), emptied per session and removed at
    exit; creating one first removes the leftovers of killed servers (:func:`remove_leftovers`)."""

    def __init__(self, max_mb: float = DEFAULT_MAX_UPLOAD_MB) -> None:
        check_max_upload(max_mb)
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.leftovers = remove_leftovers()
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX))  # created 0700 by mkdtemp
        os.chmod(self.path, 0o700)
        self._lock = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until the process ends, however it ends

    def check_size(self, name: str, size: int) -> None:
        """``InputError`` naming the limit if ``size`` bytes are over it."""
        if size > self.max_bytes:
            raise InputError(f"{name}: {size / 1024**2:.1f} MB is over the upload limit of "
                             f"{self.max_bytes / 1024**2:.0f} MB (--max-upload-mb)")

    def write(self, name: str, content: bytes | list[bytes], kind: str) -> Path:
        """Write one upload (bytes, or its parts in order) as ``<kind>-<safe name>``, replacing an earlier one of that
        kind; returns its path."""
        parts = content if isinstance(content, list) else [content]
        self.check_size(name, sum(len(part) for part in parts))
        target = self.path / f"{kind}-{safe_name(name)}"
        for earlier in self.path.glob(f"{kind}-*"):
            earlier.unlink(missing_ok=True)
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            for part in parts:
                file.write(part)
        return target

    @contextlib.contextmanager
    def private_folder(self) -> Iterator[Path]:
        """A fresh owner-only folder inside this one for the block (private copies of typed paths)."""
        folder = Path(tempfile.mkdtemp(prefix="read-", dir=self.path))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def clear(self) -> None:
        """Delete every upload (a new session starts with none)."""
        for entry in self.path.iterdir():
            if entry.name == LOCK:
                continue
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete the folder and its files (at exit)."""
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(self._lock)


def upload_label(path: Path) -> str:
    """What a path field shows for an upload: ``upload: NAME`` (never the server-side folder)."""
    return f"upload: {upload_name(path)}"


def upload_name(path: Path) -> str:
    """The browser's (cleaned) file name of an upload written by :meth:`UploadFolder.write`."""
    return Path(path).name.split("-", 1)[1] if "-" in Path(path).name else Path(path).name
