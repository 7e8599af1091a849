"""Convolutions that call oneDNN directly in the channels-last layout at inference on a CPU.

PyTorch's CPU convolution picks its backend by a size rule: with batch 1 and ``N·C·D·H <= 20480`` it takes the
im2col fallback (``slow_conv3d``, ``slow_conv_dilated3d``), which is up to 10× slower than oneDNN on
channels-last input (3D 32³ with 20 channels: 114 ms against 12 ms on a 2-core CPU). In a 3D network most
convolutions below the first level fall under that rule. These subclasses of ``nn.Conv2d``/``nn.Conv3d`` (same
parameters, same state-dict keys) send such a call to ``torch.mkldnn_convolution`` when :attr:`direct` is set
(the network's channels-last layout), the input is a float32 CPU tensor and no gradient is recorded; otherwise
they are the built-in convolutions, so the reference layout keeps the authors' numbers bit for bit and training
keeps autograd.
"""

from __future__ import annotations

import torch
from torch import nn

AVAILABLE = hasattr(torch, "mkldnn_convolution") and torch.backends.mkldnn.is_available()


class _DirectConvolution:
    """Mixin over ``nn.Conv2d``/``nn.Conv3d``: the oneDNN call when :attr:`direct` is set and it applies."""

    direct = False  # set by RecResACNet.set_layout

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (self.direct and AVAILABLE and self.padding_mode == "zeros" and input.device.type == "cpu"
                and input.dtype == torch.float32 and weight.dtype == torch.float32
                and not (torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad))):
            return torch.mkldnn_convolution(input, weight, bias, self.padding, self.stride, self.dilation, self.groups)
        return super()._conv_forward(input, weight, bias)


class Conv2d(_DirectConvolution, nn.Conv2d):
    """``nn.Conv2d`` with the direct oneDNN call (see the module docstring)."""


class Conv3d(_DirectConvolution, nn.Conv3d):
    """``nn.Conv3d`` with the direct oneDNN call (see the module docstring)."""
