"""The access log of ``drdm web``: who came, from where, and what the server did (never a file or patient name).

One line per event: ``drdm web access <UTC time> <source address> <event>: <why>``, where the event is one of
``admitted`` (a link exchanged for a session credential, or a browser given the session), ``refused``, ``in use``
(another browser holds the session) or ``ended`` (the session's browser left, went idle or was replaced). Lines
go to stderr, or appended to a file (``--access-log PATH``, created owner-only). The same ``refused`` or ``in use``
line repeated within a minute (the in-use page reloads every few seconds; a flood) is written once.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timezone
from typing import TextIO

EVENTS = ("admitted", "refused", "in use", "ended")
REPEATING = ("refused", "in use")  # written once a minute at most (a reloading page, a flood)
REPEAT_SECONDS = 60.0


class AccessLog:
    """Writes access events to ``path`` (appended, mode 0600) or to ``stream`` (default: stderr)."""

    def __init__(self, path: str | os.PathLike | None = None, stream: TextIO | None = None) -> None:
        self.path = path
        self._file: TextIO | None = None
        if path is not None:
            descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            self._file = os.fdopen(descriptor, "a", encoding="utf-8", buffering=1)
        self.stream = stream
        self._last: dict[str, float] = {}

    def __call__(self, address: str | None, event: str, why: str) -> None:
        """Record ``event`` (one of :data:`EVENTS`) for a request from ``address`` with a short reason."""
        if event not in EVENTS:
            raise ValueError(f"unknown access event {event!r}")
        key = f"{address} {event}: {why}"
        now = time.monotonic()
        if event in REPEATING:
            if now - self._last.get(key, -REPEAT_SECONDS) < REPEAT_SECONDS:
                return
            self._last = {k: t for k, t in self._last.items() if now - t < REPEAT_SECONDS}
            self._last[key] = now
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"drdm web access {stamp} {address or '-'} {event}: {why}\n"
        target = self._file or self.stream or sys.stderr
        target.write(line)
        target.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
