"""A least-recently-used cache of tensors bounded by bytes, not by entries (identity grids can be 1 GB each)."""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable[..., torch.Tensor])


def tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.element_size() * tensor.nelement()


def byte_bounded_cache(max_bytes: int) -> Callable[[F], F]:
    """Decorator: cache a function's tensors per (hashable) arguments, evicting the least recently used until
    the cached tensors hold at most ``max_bytes``; a single result larger than that is returned, not kept.
    Thread-safe (the web app and the Slicer module compute on worker threads). ``f.cache_clear()`` empties it;
    ``f.cache_bytes()`` tells the bytes held."""

    def decorate(function: F) -> F:
        entries: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        held = 0
        lock = threading.Lock()

        @functools.wraps(function)
        def cached(*args):
            nonlocal held
            with lock:
                if args in entries:
                    entries.move_to_end(args)
                    return entries[args]
            value = function(*args)
            size = tensor_bytes(value)
            if size > max_bytes:
                return value
            with lock:
                if args not in entries:
                    entries[args] = value
                    held += size
                while held > max_bytes:
                    _, evicted = entries.popitem(last=False)
                    held -= tensor_bytes(evicted)
                return entries[args]

        def cache_clear() -> None:
            nonlocal held
            with lock:
                entries.clear()
                held = 0

        cached.cache_clear = cache_clear
        cached.cache_bytes = lambda: held
        return cached  # type: ignore[return-value]

    return decorate
