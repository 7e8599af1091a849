"""Confined reading of typed paths in ``drdm web``: only files inside ``--data-dir``, opened once, read from a copy.

A path typed in the page is checked by its text (one line, not too long, no control characters, no ``..``) and by
its real path (inside the data folder, not inside a hidden folder such as the export folder). It is then opened
once, the opened descriptor's own real path is checked again (a folder swapped for a symbolic link between the
check and the open is caught), and the bytes are copied from that descriptor into a private folder, from which
SimpleITK reads. Nothing is read through a path that could have changed after the check.

Refusals are one line and never depend on whether a file exists outside what the page may open.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from drdm.physical.io import InputError

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC  # a FIFO or device never blocks the open
_DETACHED = re.compile(rb"^(?:ElementDataFile\s*=|data ?file\s*:)\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_HEADER_SUFFIXES = (".mhd", ".mha", ".nhdr", ".nrrd")
COPY_BLOCK = 1 << 20


def shown_text(text: str, limit: int = 80) -> str:
    """``text`` as an error message may show it: control characters as ``?``, long text shortened in the middle."""
    text = _CONTROL.sub("?", str(text)).encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= limit else f"{text[: limit - 25]}…{text[-20:]}"


def check_text(typed: object) -> str:
    """The typed path, stripped; ``InputError`` if it is empty, too long, or holds characters no path here has."""
    text = str(typed or "").strip()
    if not text:
        raise InputError("enter a path inside the data folder (or upload a file)")
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{shown_text(text)}: the path holds characters that cannot be used") from None
    if _CONTROL.search(text):
        raise InputError(f"{shown_text(text)}: the path holds control characters; type a plain path")
    if len(encoded) >= MAX_PATH_BYTES:
        raise InputError(f"{shown_text(text)}: the path is too long ({len(encoded)} bytes; at most {MAX_PATH_BYTES - 1})")
    if any(len(part.encode("utf-8")) > MAX_NAME_BYTES for part in text.split("/")):
        raise InputError(f"{shown_text(text)}: a name in the path is longer than {MAX_NAME_BYTES} bytes")
    return text


def open_error(text: str, error: OSError) -> InputError:
    """One line for an ``OSError`` met while opening a typed path (inside the data folder)."""
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        return InputError(f"{text}: no such file in the data folder")
    if error.errno in (errno.EACCES, errno.EPERM):
        return InputError(f"{text}: cannot be read (permission denied)")
    if error.errno == errno.ENAMETOOLONG:
        return InputError(f"{text}: the path is too long")
    if error.errno == errno.ELOOP:
        return InputError(f"{text}: too many symbolic links")
    return InputError(f"{text}: cannot be opened ({error.strerror or 'system error'})")


def descriptor_path(descriptor: int) -> Path | None:
    """The real path of an open descriptor (Linux ``/proc/self/fd``), or None where the system cannot say."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{descriptor}"))
    except OSError:
        return None


class DataFolder:
    """The folder whose files the page may open (``--data-dir``), less any ``hidden`` folder (the export folder)."""

    def __init__(self, folder: str | os.PathLike, hidden: Sequence[str | os.PathLike] = ()) -> None:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise InputError(f"--data-dir {folder}: not a folder")
        self.root = folder.resolve()
        self.hidden = [Path(os.path.realpath(Path(h).expanduser().absolute())) for h in hidden]

    def hide(self, folder: str | os.PathLike) -> None:
        """Make ``folder`` (and everything under it) invisible to typed paths."""
        self.hidden.append(Path(os.path.realpath(Path(folder).expanduser().absolute())))

    def _in_hidden(self, path: Path) -> bool:
        return any(path == h or path.is_relative_to(h) for h in self.hidden)

    def resolve(self, typed: object) -> Path:
        """The real path of ``typed`` (relative to the data folder, or absolute inside it); ``InputError`` (one
        line) if the text is unusable, contains ``..``, or leads outside the folder or into a hidden one."""
        text = check_text(typed)
        shown = shown_text(text)
        path = Path(text).expanduser() if text.startswith("~") else Path(text)
        if ".." in path.parts:
            raise InputError(f"{shown}: '..' is not allowed; give a path inside the data folder")
        candidate = path if path.is_absolute() else self.root / path
        if path.is_absolute() and not Path(os.path.abspath(candidate)).is_relative_to(self.root):
            raise InputError(f"{shown}: outside the data folder; only files under the data folder can be opened")
        real = Path(os.path.realpath(candidate))
        if self._in_hidden(Path(os.path.abspath(candidate))) or self._in_hidden(real):
            raise InputError(f"{shown}: the export folder cannot be opened from the page")
        if real.is_relative_to(self.root):
            return real
        raise InputError(f"{shown}: a symbolic link that leads outside the data folder; it is not opened")

    def shown(self, path: str | os.PathLike) -> str:
        """``path`` as the page shows it: relative to the data folder when inside it."""
        real = Path(os.path.realpath(path))
        return str(real.relative_to(self.root)) if real.is_relative_to(self.root) else Path(path).name

    @contextlib.contextmanager
    def private_copy(self, typed: object, into: str | os.PathLike) -> Iterator[Path]:
        """A copy, inside the private folder ``into``, of the file (or DICOM folder) that ``typed`` names: checked,
        opened once, checked again through the opened descriptor, copied from it. The copy keeps the file's name
        (its format is read from it) and is removed after the block."""
        real = self.resolve(typed)
        shown = shown_text(check_text(typed))
        descriptor, info = self._open_checked(real, shown)
        into = Path(into)
        target = into / real.name
        try:
            if stat.S_ISDIR(info.st_mode):
                target.mkdir(mode=0o700)
                _copy_dicom_folder(descriptor, target)
            else:
                _copy_descriptor(descriptor, target)
                self._copy_detached_data(real, target, shown)
        finally:
            os.close(descriptor)
        try:
            yield target
        finally:
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)

    def _open_checked(self, path: Path, shown: str, flags: int = _OPEN_FLAGS,
                      dir_fd: int | None = None) -> tuple[int, os.stat_result]:
        """Open ``path`` and check the opened descriptor: inside the data folder, not hidden, a file or folder."""
        try:
            descriptor = os.open(path, flags, dir_fd=dir_fd)
        except OSError as error:
            raise open_error(shown, error) from None
        try:
            info = os.fstat(descriptor)
            opened = descriptor_path(descriptor)
            if opened is None:  # no /proc: the path must still lead to the opened file
                opened = Path(os.path.realpath(path))
                if os.stat(opened)[:2] != info[:2]:
                    raise InputError(f"{shown}: changed while it was opened; try again")
            if self._in_hidden(opened):
                raise InputError(f"{shown}: the export folder cannot be opened from the page")
            if not opened.is_relative_to(self.root):
                raise InputError(f"{shown}: a symbolic link that leads outside the data folder; it is not opened")
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                raise InputError(f"{shown}: not a file or a folder")
        except BaseException:
            os.close(descriptor)
            raise
        return descriptor, info

    def _copy_detached_data(self, header: Path, copy: Path, shown: str) -> None:
        """A MetaImage/NRRD header whose voxels lie in a separate file: copy that file too, if it is a plain name
        beside the header (opened the same checked way, without following a symbolic link)."""
        if not header.name.lower().endswith(_HEADER_SUFFIXES):
            return
        with open(copy, "rb") as file:
            head = file.read(64 * 1024).split(b"\n\n", 1)[0]  # a NRRD header ends at its first blank line
        found = _DETACHED.search(head)
        name = found.group(1).decode("utf-8", "replace") if found else "LOCAL"
        if name.upper() == "LOCAL":
            return
        if "/" in name or "\\" in name or name.upper().startswith("LIST") or "%" in name or " " in name or name in (".", ".."):
            raise InputError(f"{shown}: its voxel data is not a plain file beside it; save the image as one file "
                             "(.nii.gz, .nrrd, .mha)")
        folder, info = self._open_checked(header.parent, shown, _OPEN_FLAGS | os.O_DIRECTORY)
        try:
            descriptor, info = self._open_checked(Path(name), shown, _OPEN_FLAGS | os.O_NOFOLLOW, dir_fd=folder)
        finally:
            os.close(folder)
        try:
            if not stat.S_ISREG(info.st_mode):
                raise InputError(f"{shown}: its voxel data is not a plain file beside it")
            _copy_descriptor(descriptor, copy.parent / name)
        finally:
            os.close(descriptor)


def _copy_descriptor(descriptor: int, target: Path) -> None:
    """Copy an open file's bytes (from its start) into a new owner-only file ``target`` (never an existing one)."""
    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.lseek(descriptor, 0, os.SEEK_SET)
        while block := os.read(descriptor, COPY_BLOCK):
            view = memoryview(block)
            while view:
                view = view[os.write(out, view):]
    finally:
        os.close(out)


def _is_dicom(descriptor: int) -> bool:
    head = os.pread(descriptor, 132, 0)
    return len(head) == 132 and head[128:] == b"DICM"


def _copy_dicom_folder(folder: int, target: Path) -> None:
    """Copy the DICOM files (``DICM`` at byte 128) directly in an open folder; links and subfolders are skipped."""
    for name in os.listdir(folder):
        try:
            descriptor = os.open(name, _OPEN_FLAGS | os.O_NOFOLLOW, dir_fd=folder)
        except OSError:
            continue  # a symbolic link (ELOOP), a name gone meanwhile, unreadable: not part of the series
        try:
            if stat.S_ISREG(os.fstat(descriptor).st_mode) and _is_dicom(descriptor):
                _copy_descriptor(descriptor, target / name)
        finally:
            os.close(descriptor)


def safe_name(name: str, default: str = "upload") -> str:
    """A file name the app makes from a browser's: the last component, letters/digits/``._-`` only, no leading
    dot, at most 120 characters (``../x y.nii.gz`` → ``x_y.nii.gz``)."""
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).lstrip(".")
    if len(cleaned) > 120:
        cleaned = cleaned[:60] + "_" + cleaned[-59:]
    return cleaned or default
