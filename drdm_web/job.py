"""Work on a worker thread (a generation, a model download): progress with an ETA, cancellation polled per network
step (:class:`GenerationJob`), and the one loop that follows it from the server's event loop (:func:`run_on_worker`)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TypeVar

POLL_SECONDS = 0.1  # progress refresh while a job runs
T = TypeVar("T")


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


async def run_on_worker(job: GenerationJob, work: Callable[[], T], describe: Callable[[], str],
                        show: Callable[[float, str], None], current: Callable[[], bool]) -> asyncio.Future[T] | None:
    """Run ``work`` on a worker thread; every :data:`POLL_SECONDS` until it ends, ``show(percent done, status)``
    (``"cancelling…"`` once cancelled, else ``describe()``) while ``current()`` holds.

    Returns the finished future (``result()`` gives the work's value or raises its error), or ``None`` when
    ``current()`` no longer holds at the end (a new person took the server: the outcome is retrieved and dropped).
    """
    future = asyncio.get_running_loop().run_in_executor(None, work)
    while not future.done():
        await asyncio.wait({future}, timeout=POLL_SECONDS)
        if current():
            show(round(100 * job.fraction, 1), "cancelling…" if job.cancelled() else describe())
    if not current():
        if not future.cancelled():
            future.exception()  # retrieved (no "never retrieved" warning), then dropped
        return None
    return future
