"""CUDA-graph capture of one recovery step: a function of fixed-shape CUDA tensors recorded once, then replayed.

A 2D 256² recovery step is a few hundred small kernels (two U-Net passes, warps, a composition); on a GPU their
launches, not their arithmetic, set the pace. Replaying a captured graph launches them all at once. The replay runs
the same kernels on the same data in the same order as the eager call it was recorded from, so the outputs are
the eager outputs (``Testing/engine/test_gpu.py`` compares them on a GPU).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

WARMUP_CALLS = 2  # eager calls on a side stream before capture (fills cuDNN's plans and the warp caches)


def can_capture(tensors: Sequence[torch.Tensor]) -> bool:
    """True when every tensor lives on a CUDA device and this PyTorch can record CUDA graphs."""
    return bool(tensors) and all(t.is_cuda for t in tensors) and hasattr(torch.cuda, "CUDAGraph")


class CapturedFunction:
    """``function(*inputs) -> tuple of tensors`` recorded as a CUDA graph for inputs of these shapes.

    Calling it copies the arguments into the graph's own input tensors, replays the graph and returns copies of
    the graph's outputs (new tensors, as the eager function returns: two device copies of a field per step, a
    negligible cost beside the step). The function must not synchronise with the host (no ``.item()``,
    ``bool(tensor)``); the cached constants it reads stay referenced through ``keep_alive``, so no cache can free
    them while the graph lives.
    """

    def __init__(self, function: Callable[..., tuple[torch.Tensor, ...]], inputs: Sequence[torch.Tensor],
                 keep_alive: Sequence[object] = ()) -> None:
        self.inputs = tuple(x.clone() for x in inputs)
        self.keep_alive = tuple(keep_alive)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                function(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = tuple(function(*self.inputs))

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        for static, value in zip(self.inputs, inputs):
            static.copy_(value)
        self.graph.replay()
        return tuple(output.clone() for output in self.outputs)


def captured_or_eager(function: Callable[..., tuple[torch.Tensor, ...]], inputs: Sequence[torch.Tensor],
                      keep_alive: Sequence[object] = ()) -> Callable[..., tuple[torch.Tensor, ...]]:
    """A :class:`CapturedFunction` of ``function`` when the inputs are on CUDA and capture succeeds, else
    ``function`` itself (a capture error is reported as a warning: the eager step gives the same results)."""
    if not can_capture(inputs):
        return function
    try:
        return CapturedFunction(function, inputs, keep_alive)
    except RuntimeError as error:  # e.g. an operation that cannot be captured; eager is always correct
        warnings.warn(f"CUDA-graph capture of the recovery step failed, running it eagerly: {error}", stacklevel=2)
        return function
