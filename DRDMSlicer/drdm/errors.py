"""The engine's user-facing errors: one base class, and out-of-memory failures turned into one of them.

Every error a user can fix (bad input, an unusable model, a failed download, not enough memory) is a
:class:`DRDMError` whose message says what went wrong in one line; front ends show the message, never a
traceback. ``DRDMError`` is a ``ValueError`` so that callers written against ``ValueError`` keep working.

A message names the caller's arguments as Python calls them, in backquotes (```ndims` must be 2 or 3``); a front end
that calls them otherwise rewrites the marked names into its own words (the command line: ``--dims``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

MEMORY_ADVICE = "try a smaller volume, fewer samples or the other device (cpu / cuda)"


class DRDMError(ValueError):
    """A failure the user can fix; the message says why (and how) in one line."""


class OutOfMemory(DRDMError):
    """The work does not fit in the memory of its device (the CPU estimate before the run, or an allocation
    that failed during it)."""


def is_out_of_memory(error: BaseException) -> bool:
    """True for a failed allocation: Python's ``MemoryError``, PyTorch's ``OutOfMemoryError`` (CUDA; a
    ``RuntimeError``) and the allocators' "out of memory" / "can't allocate memory" runtime errors."""
    if isinstance(error, MemoryError):
        return True
    if not isinstance(error, RuntimeError):
        return False
    text = str(error)
    return type(error).__name__ == "OutOfMemoryError" or "out of memory" in text or "can't allocate memory" in text


def out_of_memory_message(error: BaseException) -> str:
    """The one message for a failed allocation (``error`` tells the GPU from the CPU)."""
    on_cpu = isinstance(error, MemoryError) or "can't allocate memory" in str(error)
    return f"out of {'' if on_cpu else 'GPU '}memory: {MEMORY_ADVICE}"


@contextlib.contextmanager
def out_of_memory_as_error() -> Iterator[None]:
    """Turn an allocation failure inside the block into :class:`OutOfMemory`; other errors pass unchanged."""
    try:
        yield
    except (MemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        raise OutOfMemory(out_of_memory_message(error)) from None
