"""Convolutions that call oneDNN directly in the channels-last layout at inference on a CPU.

PyTorch's CPU convolution picks its backend by a size rule: with batch 1 and ``N·C·D·H <= 20480`` it takes the
im2col fallback (``slow_conv3d``, ``slow_conv_dilated3d``), which is up to 10× slower than oneDNN on
channels-last input (3D 32³ with 20 channels: 114 ms against 12 ms on a 2-core CPU). In a 3D network most
convolutions below the first level fall under that rule. These subclasses of ``nn.Conv2d``/``nn.Conv3d`` (same
parameters, same state-dict keys) send such a call to ``torch.mkldnn_convolution`` when :attr:`direct` is set
(the network's channels-last layout), the input is a float32 CPU tensor and no gradient is recorded; otherwise
they are the built-in convolutions, so the reference layout keeps the authors' numbers bit for bit and training
keeps autograd.

:meth:`~_DirectConvolution.leaky` and :meth:`~_DirectConvolution.plus` fold the block's next step (a leaky ReLU,
a residual sum) into the same oneDNN call as a post-op (``torch.ops.mkldnn._convolution_pointwise``, the fused
operator PyTorch's own compiler emits), saving a pass over the activations; the values equal the unfused
``mkldnn_convolution`` followed by the step (``Testing/engine/test_network.py``). That operator is PyTorch-internal:
where it is missing, or the first call with it fails (a changed signature in a later release), they warn once
and run the step separately from then on.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

AVAILABLE = hasattr(torch, "mkldnn_convolution") and torch.backends.mkldnn.is_available()
FUSED = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None) if AVAILABLE else None


class _DirectConvolution:
    """Mixin over ``nn.Conv2d``/``nn.Conv3d``: the oneDNN call when :attr:`direct` is set and it applies."""

    direct = False  # set by RecResACNet.set_layout
    fused_usable = FUSED is not None  # False from the first failing fused call on (for the whole process)

    def _goes_direct(self, input: torch.Tensor) -> bool:
        return (self.direct and AVAILABLE and self.padding_mode == "zeros" and input.device.type == "cpu"
                and input.dtype == torch.float32 and self.weight.dtype == torch.float32
                and not (torch.is_grad_enabled() and (input.requires_grad or self.weight.requires_grad)))

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self._goes_direct(input):
            return torch.mkldnn_convolution(input, weight, bias, self.padding, self.stride, self.dilation, self.groups)
        return super()._conv_forward(input, weight, bias)

    def _geometry(self) -> tuple[list[int], list[int], list[int], int]:
        return list(self.padding), list(self.stride), list(self.dilation), self.groups

    def _fused(self, input: torch.Tensor, *arguments: object, binary: bool = False) -> torch.Tensor | None:
        """The fused oneDNN call, or ``None`` where it does not apply or no longer works here."""
        if not _DirectConvolution.fused_usable or not self._goes_direct(input):
            return None
        try:
            if binary:
                return FUSED.binary(input, arguments[0], self.weight, self.bias, *self._geometry(), *arguments[1:])
            return FUSED(input, self.weight, self.bias, *self._geometry(), *arguments)
        except (RuntimeError, TypeError) as error:
            _DirectConvolution.fused_usable = False
            warnings.warn(f"fused oneDNN convolution unavailable, running the steps separately: {error}", stacklevel=3)
            return None

    def leaky(self, input: torch.Tensor, slope: float) -> torch.Tensor:
        """``leaky_relu(self(input), slope)``, the activation fused into the convolution where it goes direct."""
        fused = self._fused(input, "leaky_relu", [slope], "")
        return fused if fused is not None else nn.functional.leaky_relu_(self(input), slope)

    def plus(self, input: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """``self(input) + other``, the sum fused into the convolution where it goes direct (``other`` in the
        output's shape and layout)."""
        fused = None
        if other.is_contiguous(memory_format=_layout_of(other)):
            fused = self._fused(input, other, "add", None, None, [], None, binary=True)
        return fused if fused is not None else self(input).add_(other)


def _layout_of(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.dim() == 4 else torch.channels_last_3d


class Conv2d(_DirectConvolution, nn.Conv2d):
    """``nn.Conv2d`` with the direct oneDNN call (see the module docstring)."""


class Conv3d(_DirectConvolution, nn.Conv3d):
    """``nn.Conv3d`` with the direct oneDNN call (see the module docstring)."""
