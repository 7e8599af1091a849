"""Failures as the page shows them: one ``error: …`` line, nothing of the server's paths or code.

:func:`one_line` turns any exception into one short line (an ``OSError`` by its reason, never its file name; an
unexpected error by its type, never its traceback); :class:`Scrubber` replaces the server's own folders in a
message by what the page calls them; :func:`page_handler` wraps a handler of the page so that whatever it raises
ends as such a line in the status (and the server log gets the type only, the details at debug level).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .files import shown_text

log = logging.getLogger("drdm.web")
F = TypeVar("F", bound=Callable[..., Any])
MAX_MESSAGE = 300


def one_line(error: BaseException) -> str:
    """A message for the page: ``ValueError`` (the engine's and this app's own one-line errors) as it is,
    ``OSError`` by its reason only, anything else by its type."""
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    if isinstance(error, ValueError) and str(error):
        return str(error)
    return f"an unexpected error ({type(error).__name__}); the server's log has the details"


class Scrubber:
    """Replaces server folders in messages (longest first): ``(folder, shown as)`` pairs; a folder shown as ``""``
    makes the paths under it relative (``/srv/ward/a.nii.gz`` → ``a.nii.gz``)."""

    def __init__(self, *folders: tuple[str | os.PathLike, str]) -> None:
        pairs = [(str(Path(folder)), shown) for folder, shown in folders]
        pairs += [(sys.prefix, "<server>"), (str(Path(__file__).resolve().parents[1]), "<server>"),
                  (os.path.expanduser("~"), "~")]
        self.pairs = sorted({p for p in pairs if len(p[0]) > 1}, key=lambda p: -len(p[0]))

    def __call__(self, message: str) -> str:
        text = str(message).replace("\r", " ").split("\n", 1)[0]
        for folder, shown in self.pairs:
            text = text.replace(folder + "/", f"{shown}/" if shown else "").replace(folder, shown or ".")
        return shown_text(text, MAX_MESSAGE)


def page_handler(what: str) -> Callable[[F], F]:
    """Decorate an app method called by the page: an exception becomes ``self.fail("<what>: <one line>")``."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def guarded(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except Exception as error:  # the page gets one line; the server keeps running
                log.warning("drdm web: %s failed (%s)", what, type(error).__name__)
                log.debug("drdm web: %s failed", what, exc_info=True)
                self.fail(f"{what}: {one_line(error)}")
                return None

        return guarded  # type: ignore[return-value]

    return decorate
