"""RecResACNet: the recursive residual atrous U-Net of the DRDM reference (SPEC §3), 2D and 3D.

The state-dict keys and their order equal the authors' published checkpoint, so
``load_state_dict(torch.load(path, weights_only=True, map_location="cpu"), strict=True)`` works.
The network returns displacements in the reference's *size units* (1.0 = ``S`` voxels, ``S`` = size of
the first spatial axis), channel c along array axis c; :func:`size_units_to_voxels` converts once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from .kernels.direct_convolution import Conv2d, Conv3d
from .settings import PRECISIONS
from .spatial import warp

LEAK = 1e-6  # negative slope of the reference's leaky ReLU
LAYOUTS = ("channels-last", "reference")  # memory layouts of the network's convolutions (see RecResACNet.set_layout)


def sinusoid_table(num_steps: int, dim: int) -> torch.Tensor:
    """The reference time table ``E[t, 2k] = sin(t·ω_k)``, ``E[t, 2k+1] = cos(t·ω_k)``, ``ω_k = 10000^(-4k/dim)``."""
    # Frequencies in double precision, then float32 (this reproduces the published table bit for bit).
    omega = torch.tensor([1.0 / 10000 ** (2.0 * j / dim) for j in range(0, dim, 2)], dtype=torch.float32)
    steps = torch.arange(num_steps, dtype=torch.float32).unsqueeze(1)
    table = torch.zeros(num_steps, dim)
    table[:, 0::2] = torch.sin(steps * omega)
    table[:, 1::2] = torch.cos(steps * omega[: dim // 2])
    return table


def _leaky(z: torch.Tensor) -> torch.Tensor:
    return nn.functional.leaky_relu(z, LEAK)


def _conv(ndims: int) -> type[nn.Module]:
    return Conv2d if ndims == 2 else Conv3d


class AtrousBlock(nn.Module):
    """Residual atrous block ``A(c_in → c_out)``: conv0 (+ instance norm), dilations 1 and 3, residual."""

    memory_format = torch.contiguous_format  # the network's layout (set by RecResACNet.set_layout)

    def __init__(self, ndims: int, c_in: int, c_out: int, norm: bool) -> None:
        super().__init__()
        conv = _conv(ndims)
        if norm:  # registered first: the checkpoint lists ln before conv0
            norm_cls = nn.InstanceNorm2d if ndims == 2 else nn.InstanceNorm3d
            self.ln = norm_cls(c_out, affine=True, eps=1e-5)
        else:
            self.ln = None
        self.conv0 = conv(c_in, c_out, 3, 1, 1)
        self.convs = nn.ModuleList([conv(c_out, c_out, 3, 1, 1, dilation=1), conv(c_out, c_out, 3, 1, 3, dilation=3)])

    def _normalise(self, y: torch.Tensor) -> torch.Tensor:
        if y.is_contiguous():  # the reference layout: the authors' instance norm, bit for bit
            return self.ln(y)
        # channels-last: the same statistics without the layout round trip of the built-in (within 1e-6), by two
        # plain means (a strided var_mean over channels-last is several times slower than both together)
        dims = tuple(range(2, y.dim()))
        centred = y - y.mean(dim=dims, keepdim=True)
        var = torch.square(centred).mean(dim=dims, keepdim=True)
        shape = (1, -1) + (1,) * (y.dim() - 2)
        return torch.addcmul(self.ln.bias.view(shape), centred, torch.rsqrt(var + self.ln.eps) * self.ln.weight.view(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a 3D convolution of a one-channel input answers NCDHW whatever the strides: restore the layout here
        y = self.conv0(x).contiguous(memory_format=self.memory_format)
        if self.ln is not None:
            y = self._normalise(y)
        # activation and residual sum fused into the convolutions or done in place: the same values, fewer passes
        r = self.convs[1].plus(self.convs[0].leaky(_leaky(y), LEAK), y)
        return nn.functional.leaky_relu_(r, LEAK)


def _time_mlp(embed_dim: int, channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(embed_dim, channels), nn.ReLU(), nn.Linear(channels, channels))


def _stage(ndims: int, widths: tuple[int, int, int, int], norm: bool) -> nn.Sequential:
    c0, c1, c2, c3 = widths
    return nn.Sequential(AtrousBlock(ndims, c0, c1, norm), AtrousBlock(ndims, c1, c2, norm), AtrousBlock(ndims, c2, c3, norm))


class RecResACNet(nn.Module):
    """The DRDM recovery network (SPEC §3).

    Args:
        ndims: 2 or 3 spatial dimensions.
        in_channels: image channels (the published models use 1).
        num_steps: number of diffusion levels T (rows of the time table).
        embed_dim: width of the sinusoidal time embedding.
        width: channels of the first stage; deeper stages use 2×, 4× and 8× (the published models: 10).
        layout: ``"channels-last"`` (default: oneDNN convolutions without layout reorders, called directly and
            with fused activations on a CPU, outputs within 3e-6 of the reference, bit-reproducible on a given
            build) or ``"reference"`` (contiguous NC(D)HW, the authors' outputs bit for bit); see :meth:`set_layout`.

    ``forward(x, t, rec_num=2)``: ``x`` ``(N, in_channels, *spatial)`` with every size divisible by 8,
    ``t`` integer levels ``(N,)`` (or an int); returns ``(N, ndims, *spatial)`` in size units.
    """

    def __init__(self, ndims: int = 2, in_channels: int = 1, num_steps: int = 80, embed_dim: int = 100,
                 width: int = 10, layout: str = "channels-last") -> None:
        super().__init__()
        if ndims not in (2, 3):
            raise ValueError(f"ndims must be 2 or 3, got {ndims}")
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        self.ndims, self.in_channels, self.num_steps, self.embed_dim = ndims, in_channels, num_steps, embed_dim
        self.width = width
        w1, w2, w4, w8 = width, 2 * width, 4 * width, 8 * width
        conv = _conv(ndims)
        conv_t = nn.ConvTranspose2d if ndims == 2 else nn.ConvTranspose3d
        # Registration order = the reference state-dict order (SPEC Appendix A).
        self.time_embed = nn.Embedding(num_steps, embed_dim)
        self.time_embed.weight.data.copy_(sinusoid_table(num_steps, embed_dim))
        self.time_embed.weight.requires_grad_(False)
        self.te1 = _time_mlp(embed_dim, 1)
        self.b1 = _stage(ndims, (in_channels, w1, w1, w1), norm=True)
        self.down1 = conv(w1, w1, 4, 2, 1)
        self.te2 = _time_mlp(embed_dim, w1)
        self.b2 = _stage(ndims, (w1, w2, w2, w2), norm=True)
        self.down2 = conv(w2, w2, 4, 2, 1)
        self.te3 = _time_mlp(embed_dim, w2)
        self.b3 = _stage(ndims, (w2, w4, w4, w4), norm=True)
        self.down3 = conv(w4, w4, 4, 2, 1)
        self.te_mid = _time_mlp(embed_dim, w4)
        self.b_mid = _stage(ndims, (w4, w2, w2, w4), norm=True)
        self.up1 = conv_t(w4, w4, 4, 2, 1)
        self.te4 = _time_mlp(embed_dim, w8)
        self.b4 = _stage(ndims, (w8, w4, w2, w2), norm=False)
        self.up2 = conv_t(w2, w2, 4, 2, 1)
        self.te5 = _time_mlp(embed_dim, w4)
        self.b5 = _stage(ndims, (w4, w2, w1, w1), norm=False)
        self.up3 = conv_t(w1, w1, 4, 2, 1)
        self.te_out = _time_mlp(embed_dim, w2)
        self.b_out = _stage(ndims, (w2, w1, w1, w1), norm=False)
        self.conv_out = conv(w1, ndims, 3, 1, 1)
        self.layout = "reference"
        self.set_layout(layout)

    def _memory_format(self) -> torch.memory_format:
        if self.layout == "reference":
            return torch.contiguous_format
        return torch.channels_last if self.ndims == 2 else torch.channels_last_3d

    def set_layout(self, layout: str) -> RecResACNet:
        """Choose the memory layout of the weights and activations (in place; returns ``self``).

        ``"channels-last"`` stores the convolution weights and runs the activations as (N, *spatial, C) in memory:
        oneDNN then skips a layout reorder around every convolution; on a CPU at inference the convolutions call
        oneDNN directly (:mod:`drdm.kernels.direct_convolution`: PyTorch's own size rule sends most 3D levels to a slow
        fallback) with the leaky ReLU and the residual sum fused in. Measured on a 2-core CPU, same run, fresh
        processes (``benchmarks/network_call.py``): 1.49× per 2D 256² call, 1.43× per faithful 2D sample, 2.7× per
        3D 64³ call. The sums are ordered differently, so outputs differ from the reference by a few 1e-6 (within
        the reference vectors' 1e-5); the sampler amplifies that into a different but equally distributed sample
        for the same seed.
        ``"reference"`` is the authors' layout and reproduces their outputs bit for bit. Shapes, units and the
        state dict's values are the same.
        """
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
        self.layout = layout
        fmt = self._memory_format()
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
                module.weight.data = module.weight.data.contiguous(memory_format=fmt)
            if isinstance(module, (Conv2d, Conv3d)):
                module.direct = layout == "channels-last"
            elif isinstance(module, AtrousBlock):
                module.memory_format = fmt
        return self

    def _in_layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with the layout's strides. A one-channel image is contiguous in both layouts, so ``.contiguous``
        keeps the NCHW strides and the convolutions would run NCHW for the first block; an explicit copy into
        channels-last strides keeps the whole pass channels-last."""
        if self.layout == "reference":
            return x.contiguous()
        return torch.empty_like(x, memory_format=self._memory_format()).copy_(x)

    def _check_input(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        if x.dim() != self.ndims + 2:
            raise ValueError(f"a {self.ndims}D network needs input (N, C, *{self.ndims} sizes), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"network expects {self.in_channels} input channel(s), got {x.shape[1]}")
        if any(s % 8 for s in x.shape[2:]):
            raise ValueError(f"every spatial size must be divisible by 8, got {tuple(x.shape[2:])}")
        t = torch.as_tensor(t, device=x.device)
        if t.is_floating_point():
            raise ValueError("time steps must be integers")
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t.reshape(-1)
        if t.numel() != x.shape[0]:
            raise ValueError(f"{t.numel()} time steps for a batch of {x.shape[0]}")
        if t.device.type == "cpu" and (int(t.min()) < 0 or int(t.max()) >= self.num_steps):
            raise ValueError(f"time steps must lie in [0, {self.num_steps - 1}]")
        return t.long()

    def _time_features(self, t: torch.Tensor) -> list[torch.Tensor]:
        e = self.time_embed(t)
        tail = (1,) * self.ndims
        mlps = (self.te1, self.te2, self.te3, self.te_mid, self.te4, self.te5, self.te_out)
        return [mlp(e).reshape(e.shape[0], -1, *tail) for mlp in mlps]

    def unet(self, x: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        """One U-Net pass with the output limit; ``feats`` from the seven time MLPs. Size units."""
        te1, te2, te3, te_mid, te4, te5, te_out = feats
        o1 = self.b1(self._in_layout(x + te1))
        o2 = self.b2(self.down1(o1) + te2)
        o3 = self.b3(self.down2(o2) + te3)
        om = self.b_mid(self.down3(o3) * te_mid)
        o4 = self.b4(torch.cat([o3, self.up1(om)], dim=1) + te4)
        o5 = self.b5(torch.cat([o2, self.up2(o4)], dim=1) + te5)
        out = self.b_out(torch.cat([o1, self.up3(o5)], dim=1) + te_out)
        raw = self.conv_out(out)
        size = x.shape[2]
        return torch.clamp(raw * size, 1 - size, size - 1) / size

    def forward(self, x: torch.Tensor, t: torch.Tensor | int, rec_num: int = 2) -> torch.Tensor:
        if rec_num < 1:
            raise ValueError(f"rec_num must be >= 1, got {rec_num}")
        t = self._check_input(x, t)
        feats = self._time_features(t)
        size = x.shape[2]
        field = None
        image = x
        for r in range(rec_num):
            step = self.unet(image, feats)
            step_vox = step * size
            field = step if field is None else step + warp(field, step_vox, "linear", "border")
            if r + 1 < rec_num:
                image = warp(x, field * size, "linear", "zeros")
        return field.contiguous()


@contextlib.contextmanager
def convolution_precision(precision: str = "exact") -> Iterator[None]:
    """The network's float32 arithmetic on an NVIDIA GPU inside the block (previous settings restored after).

    ``"exact"``: cuDNN's and cuBLAS's TF32 off, full float32. PyTorch lets cuDNN use TF32 by default, which put the
    published model's outputs 1.1e-4 (reference layout) and 4.4e-4 (channels-last) from the reference vectors on an
    H200, against 1.4e-6 without it (``benchmarks/results/gpu_nvidia-h200_2026-11-28.md``); the vectors allow 1e-5.
    ``"tf32"``: TF32 allowed for convolutions and matrix products (faster tensor-core arithmetic with a 10-bit
    mantissa; its speed-up is waiting for a GPU measurement, ``benchmarks/gpu_check.py``). No effect on a CPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    allowed = precision == "tf32"
    previous = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous


def size_units_to_voxels(field: torch.Tensor) -> torch.Tensor:
    """Convert a network output (size units, ``S`` = first spatial size) to voxels."""
    return field * field.shape[2]

