"""Work on a worker thread (a generation, a model download): progress with an ETA, cancellation polled per network
step (:class:`GenerationJob`), and the one loop that follows it from the server's event loop (:func:`run_on_worker`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

from DRDMSlicerLib.progress import ProgressClock

POLL_SECONDS = 0.1  # progress refresh while a job runs
T = TypeVar("T")


class GenerationJob(ProgressClock):
    """Progress and cancellation shared between the worker thread and the server's thread.

    The worker calls :meth:`progress` (the engine's ``progress(step, total)`` callback) and :meth:`cancelled`
    (its ``cancel()`` callback, polled once per network step); the server reads :attr:`fraction` and
    :meth:`describe` (the time left: :class:`DRDMSlicerLib.progress.ProgressClock`, as the Slicer module shows it)
    and calls :meth:`cancel`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._cancel = threading.Event()

    def progress(self, step: int, total: int) -> None:
        self.update(step, total)

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def fraction(self) -> float:
        """Done fraction in [0, 1]."""
        return self.step / self.total if self.total else 0.0

    def describe(self) -> str:
        """``"step 12/40, about 9 s left"`` (``"starting…"`` before the first step)."""
        return "starting…" if not self.step or not self.total else self.text()


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
