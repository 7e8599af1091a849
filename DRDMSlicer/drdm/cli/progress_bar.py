"""A ``progress(step, total)`` callback for the command line: a tqdm bar with its time left."""

from __future__ import annotations

import sys


def progress_bar(description: str, unit: str = "step"):
    """A ``progress(step, total)`` callback drawing a tqdm bar with ETA."""
    from tqdm import tqdm

    bar = None

    def update(step: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=description, unit=unit, leave=False, file=sys.stderr)
        bar.update(step - bar.n)
        if step == total:
            bar.close()

    return update
