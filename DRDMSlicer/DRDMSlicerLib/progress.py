"""Progress of a generation as the front ends show it: the one time-left estimate of the Slicer module and the web
app (the command line draws tqdm's bar, which estimates the same way)."""

from __future__ import annotations

import time


class ProgressClock:
    """Counts recovery steps and extrapolates the time left from the steps done so far.

    Example::

        clock = ProgressClock()
        clock.update(12, 40)
        clock.seconds_left()   # elapsed / 12 * 28
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.step = 0
        self.total = 0

    def update(self, step: int, total: int) -> None:
        """Record that ``step`` of ``total`` steps are done."""
        self.step, self.total = int(step), int(total)

    def seconds_left(self) -> float | None:
        """Time left in seconds, the mean time per step so far times the steps left (``None`` before the first)."""
        if self.step <= 0:
            return None
        return (time.monotonic() - self.started) / self.step * (self.total - self.step)

    def text(self) -> str:
        """``"step 12/40, about 9 s left"`` (``"step 0/40"`` before the first step)."""
        left = self.seconds_left()
        done = f"step {self.step}/{self.total}"
        return done if left is None else f"{done}, about {left:.0f} s left"
