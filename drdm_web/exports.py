"""The export folder of ``drdm web``: every export under a new name, never through a link, owner-only.

Each export is first written into a fresh private staging folder inside the export folder (``mkdtemp``: 0700, a
random name nobody else can have planted), its files are made 0600 and its folders 0700, and only then does it get
its public name: a file by creating that name exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``), a folder by creating
an empty folder of that name (``mkdir`` fails on anything already there, a symbolic link included) and renaming
the staged one onto it. A name that is taken, by an earlier export or anything else, is never overwritten: the
next free name is used instead (``stack_transform.h5``, ``stack_transform-2.h5``, …).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from drdm.physical.io import InputError

STAGING_PREFIX = ".drdm-export-"
MAX_NUMBERED = 10_000


def numbered(name: str, number: int) -> str:
    """``name`` with ``-number`` before its extension (``.nii.gz`` counts as one): ``a.h5``, 2 → ``a-2.h5``."""
    if number <= 1:
        return name
    suffix = ".nii.gz" if name.lower().endswith(".nii.gz") else Path(name).suffix
    return f"{name[: len(name) - len(suffix)]}-{number}{suffix}"


def make_private(path: Path) -> None:
    """Files 0600 and folders 0700 under ``path`` (which is a file or a folder); links are not followed."""
    if path.is_symlink():
        return
    if path.is_dir():
        os.chmod(path, 0o700)
        for root, folders, files in os.walk(path):
            for name in folders:
                if not os.path.islink(os.path.join(root, name)):
                    os.chmod(os.path.join(root, name), 0o700)
            for name in files:
                if not os.path.islink(os.path.join(root, name)):
                    os.chmod(os.path.join(root, name), 0o600)
    else:
        os.chmod(path, 0o600)


class ExportFolder:
    """``--export-dir``: created 0700 when missing; exports get new names inside it (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).expanduser().absolute()

    def prepare(self) -> Path:
        """Create the folder (0700) if it is missing; ``InputError`` if that fails or it is not a folder."""
        try:
            if not self.path.exists():
                self.path.mkdir(mode=0o700, parents=True)
            if not self.path.is_dir():
                raise InputError(f"--export-dir {self.path}: not a folder")
        except OSError as error:
            raise InputError(f"the export folder cannot be created ({error.strerror})") from None
        return self.path

    @contextlib.contextmanager
    def _staging(self) -> Iterator[Path]:
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.prepare()))
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def add_file(self, name: str, write: Callable[[Path], object]) -> Path:
        """``write(path)`` writes one file (named ``name``) into a private staging folder; it is then copied to the
        first free numbered ``name`` in the export folder (0600); returns that path."""
        with self._staging() as staging:
            staged = staging / name
            write(staged)
            make_private(staged)
            for number in range(1, MAX_NUMBERED):
                final = self.path / numbered(name, number)
                try:
                    descriptor = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                         0o600)
                except FileExistsError:
                    continue
                with os.fdopen(descriptor, "wb") as out, open(staged, "rb") as source:
                    shutil.copyfileobj(source, out, 1 << 20)
                return final
        raise InputError(f"{name}: no free name left in the export folder")

    def add_folder(self, write: Callable[[Path], Path]) -> Path:
        """``write(parent)`` writes one folder into a private staging folder and returns it; it is then renamed to the
        first free numbered form of its name in the export folder (folders 0700, files 0600); returns that path."""
        with self._staging() as staging:
            staged = Path(write(staging))
            if staged.parent != staging or not staged.is_dir() or staged.is_symlink():
                raise InputError("the export did not produce a folder")
            make_private(staged)
            for number in range(1, MAX_NUMBERED):
                final = self.path / numbered(staged.name, number)
                try:
                    final.mkdir(mode=0o700)  # claims the name; fails on anything already there, links included
                except FileExistsError:
                    continue
                os.rename(staged, final)  # onto the empty folder just made (a swapped-in link: ENOTDIR, no write)
                return final
        raise InputError(f"{staged.name}: no free name left in the export folder")

    def shown(self, path: str | os.PathLike) -> str:
        """An export's name as the page shows it (relative to the export folder, never the server's path)."""
        path = Path(path)
        return str(path.relative_to(self.path)) if path.is_relative_to(self.path) else path.name


def zipped(folder: Path) -> bytes:
    """A zip of ``folder``'s files under ``<folder name>/`` (an exported sample folder, for the browser's download)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.iterdir()):
            archive.write(file, f"{folder.name}/{file.name}")
    return buffer.getvalue()
