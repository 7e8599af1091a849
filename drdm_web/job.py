"""A generation running on a worker thread: progress with an ETA, and cancellation polled per network step."""

from __future__ import annotations

import threading
import time


class GenerationJob:
    """Progress and cancellation shared between the worker thread and the server's thread.

    The worker calls :meth:`progress` (the engine's ``progress(step, total)`` callback) and :meth:`cancelled`
    (its ``cancel()`` callback, polled once per network step); the server reads :attr:`fraction` and
    :meth:`eta_seconds` and calls :meth:`cancel`.
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.step = 0
        self.total = 0
        self._cancel = threading.Event()

    def progress(self, step: int, total: int) -> None:
        self.step, self.total = int(step), int(total)

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def fraction(self) -> float:
        """Done fraction in [0, 1]."""
        return self.step / self.total if self.total else 0.0

    def eta_seconds(self) -> float | None:
        """Time left, extrapolated from the steps done so far (``None`` before the first step)."""
        if not self.step or not self.total:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / self.step * (self.total - self.step)

    def describe(self) -> str:
        """``"step 12/40, about 9 s left"``."""
        eta = self.eta_seconds()
        if eta is None:
            return "starting…"
        return f"step {self.step}/{self.total}, about {eta:.0f} s left"
