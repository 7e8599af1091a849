"""Spatial operations on images and displacement fields: the only module that calls ``grid_sample``.

Conventions (used everywhere in :mod:`drdm`):

* tensors are ``(N, C, *spatial)`` with spatial axes in array order ``(z, y, x)`` (3D) or ``(y, x)`` (2D);
* a displacement field (DDF) has ``ndim`` channels; channel ``i`` moves along array axis ``i``, in voxels
  of the grid it lives on;
* warping is a pull-back: ``out(p) = in(p + u(p))`` at integer index positions ``p``.

Example::

    ddf = torch.zeros(1, 2, 64, 64); ddf[:, 1] = 3.0      # 3 pixels along x (array axis 1)
    moved = warp(image, ddf)                               # moved[..., i, j] == image[..., i, j + 3]
"""

from __future__ import annotations

import functools
import itertools
import math

import torch
import torch.nn.functional as F

from .kernels.tensor_cache import byte_bounded_cache

INTERPOLATION_MODES = ("linear", "cubic", "nearest")
PADDING_MODES = ("zeros", "border")
CUBIC_A = -0.75  # Keys cubic-convolution parameter used by the reference (and by PyTorch's bicubic)


def _check_field(x: torch.Tensor, ddf: torch.Tensor) -> int:
    """Validate a (tensor, field) pair and return the number of spatial dimensions."""
    if not isinstance(ddf, torch.Tensor) or not isinstance(x, torch.Tensor):
        raise ValueError("warp expects torch tensors")
    ndim = ddf.dim() - 2
    if ndim not in (2, 3):
        raise ValueError(f"displacement field must be (N, ndim, *spatial) with ndim 2 or 3, got shape {tuple(ddf.shape)}")
    if ddf.shape[1] != ndim:
        raise ValueError(f"displacement field has {ddf.shape[1]} channels but {ndim} spatial dimensions")
    if x.dim() != ddf.dim():
        raise ValueError(f"input has {x.dim() - 2} spatial dimensions but the field has {ndim}")
    if x.shape[2:] != ddf.shape[2:]:
        raise ValueError(f"input spatial shape {tuple(x.shape[2:])} differs from field shape {tuple(ddf.shape[2:])}")
    if x.shape[0] != ddf.shape[0] and ddf.shape[0] != 1 and x.shape[0] != 1:
        raise ValueError(f"batch sizes differ: input {x.shape[0]}, field {ddf.shape[0]}")
    return ndim


# The cached constants below are created outside inference mode (``torch.inference_mode(False)``): a tensor
# made under ``torch.inference_mode()`` cannot take part in autograd, so a cache first filled there (e.g. by a
# recovery-error measurement) would break every later ``backward()`` through a warp.


IDENTITY_CACHE_BYTES = 256 * 2**20  # identity positions are (1, *shape, ndim): 0.9 GB for a 512²×300 volume


@byte_bounded_cache(IDENTITY_CACHE_BYTES)
def _identity_positions(shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Voxel index positions, channel-last in grid_sample order (last array axis first): (1, *shape, ndim)."""
    with torch.inference_mode(False):
        axes = [torch.arange(s, device=device, dtype=dtype) for s in shape]
        mesh = torch.meshgrid(*axes, indexing="ij")
        return torch.stack(mesh[::-1], dim=-1).unsqueeze(0)


@functools.lru_cache(maxsize=32)
def _half_extent(shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(S_a - 1) / 2 per axis in grid_sample order; 1 for singleton axes (they cannot be displaced)."""
    half = [max(s - 1, 1) / 2.0 for s in shape[::-1]]
    with torch.inference_mode(False):
        return torch.tensor(half, device=device, dtype=dtype)


def grid_constants(shape: tuple[int, ...], device: torch.device | str,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    """The cached tensors that warps on this grid read (hold them while a CUDA graph that warps is replayed)."""
    shape, device = tuple(shape), torch.device(device)
    return _identity_positions(shape, device, dtype), _half_extent(shape, device, dtype)


def identity_grid(shape: tuple[int, ...], device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Voxel positions ``(1, ndim, *shape)``, channel i = index along array axis i (cached per shape/device/dtype)."""
    pos = _identity_positions(tuple(shape), torch.device(device), dtype)
    return pos.flip(-1).movedim(-1, 1)


def _normalised_grid(ddf: torch.Tensor) -> torch.Tensor:
    """Sampling grid for ``grid_sample(align_corners=True)`` from a voxel displacement field."""
    shape = tuple(ddf.shape[2:])
    ident = _identity_positions(shape, ddf.device, ddf.dtype)
    half = _half_extent(shape, ddf.device, ddf.dtype)
    positions = ddf.movedim(1, -1).flip(-1) + ident
    return positions / half - 1.0


def _keys_weights(frac: torch.Tensor) -> list[torch.Tensor]:
    """Keys cubic weights for taps at offsets -1, 0, 1, 2 given the fractional position in [0, 1)."""
    a = CUBIC_A

    def near(s: torch.Tensor) -> torch.Tensor:
        return ((a + 2) * s - (a + 3)) * s * s + 1

    def far(s: torch.Tensor) -> torch.Tensor:
        return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a

    return [far(frac + 1), near(frac), near(1 - frac), far(2 - frac)]


def _cubic_gather(x: torch.Tensor, ddf: torch.Tensor, padding: str) -> torch.Tensor:
    """Separable Keys cubic convolution (a = -0.75) by explicit gathering; any number of dimensions.

    Taps outside the array contribute zero (``zeros``) or the nearest edge value (``border``), as PyTorch's
    bicubic ``grid_sample`` does in 2D.
    """
    n, c = max(x.shape[0], ddf.shape[0]), x.shape[1]
    shape = tuple(ddf.shape[2:])
    ident = identity_grid(shape, ddf.device, ddf.dtype)
    pos = ddf + ident
    base = torch.floor(pos)
    frac = pos - base
    base = base.long()
    weights = [_keys_weights(frac[:, a]) for a in range(len(shape))]
    strides = [math.prod(shape[a + 1:]) for a in range(len(shape))]
    flat = x.expand(n, *x.shape[1:]).reshape(n, c, -1)
    out = torch.zeros((n, c) + shape, dtype=x.dtype, device=x.device)
    for offsets in itertools.product(range(4), repeat=len(shape)):
        weight = None
        index = torch.zeros((n,) + shape, dtype=torch.long, device=x.device)
        valid = None
        for a, k in enumerate(offsets):
            idx = base[:, a] + (k - 1)
            if padding == "zeros":
                inside = (idx >= 0) & (idx < shape[a])
                valid = inside if valid is None else valid & inside
            idx = idx.clamp(0, shape[a] - 1)
            index += idx * strides[a]
            weight = weights[a][k] if weight is None else weight * weights[a][k]
        if valid is not None:
            weight = weight * valid
        values = torch.gather(flat, 2, index.reshape(n, 1, -1).expand(n, c, -1)).reshape(out.shape)
        out += weight.unsqueeze(1) * values
    return out


def sample_at(x: torch.Tensor, positions: torch.Tensor, mode: str = "linear", padding: str = "zeros") -> torch.Tensor:
    """Interpolate ``x`` at continuous index positions (the general form of :func:`warp`).

    Args:
        x: ``(N, C, *in_spatial)``.
        positions: ``(N, ndim, *out_spatial)``, channel i = continuous index along array axis i of ``x``.
        mode, padding: as for :func:`warp` (cubic only for 2D here).

    Returns:
        ``(N, C, *out_spatial)``.
    """
    ndim = positions.dim() - 2
    if x.dim() != positions.dim() or positions.shape[1] != ndim or ndim not in (2, 3):
        raise ValueError(f"positions {tuple(positions.shape)} do not fit an input of shape {tuple(x.shape)}")
    if mode not in INTERPOLATION_MODES or padding not in PADDING_MODES:
        raise ValueError(f"unknown mode/padding {mode!r}/{padding!r}")
    if mode == "cubic" and ndim == 3:
        raise ValueError("cubic sampling at arbitrary positions is 2D only; use warp() for 3D cubic warps")
    half = _half_extent(tuple(x.shape[2:]), positions.device, positions.dtype)
    grid = positions.movedim(1, -1).flip(-1) / half - 1.0
    torch_mode = {"linear": "bilinear", "cubic": "bicubic", "nearest": "nearest"}[mode]
    return F.grid_sample(x, grid.to(x.dtype), mode=torch_mode, padding_mode=padding, align_corners=True)


def warp(x: torch.Tensor, ddf: torch.Tensor, mode: str = "linear", padding: str = "zeros") -> torch.Tensor:
    """Pull-back warp: ``out(p) = x(p + ddf(p))``.

    Args:
        x: ``(N, C, *spatial)`` image or field (every channel interpolated independently).
        ddf: ``(N, ndim, *spatial)`` displacement in voxels, channel i along array axis i.
        mode: ``"linear"`` (bi/trilinear), ``"cubic"`` (Keys cubic convolution, a = -0.75) or ``"nearest"``.
        padding: ``"zeros"`` (taps outside the array are 0) or ``"border"`` (edge values repeat).

    Returns:
        ``(N, C, *spatial)`` tensor of ``x``'s dtype.
    """
    _check_field(x, ddf)
    if mode not in INTERPOLATION_MODES:
        raise ValueError(f"unknown interpolation mode {mode!r}; choose one of {INTERPOLATION_MODES}")
    if padding not in PADDING_MODES:
        raise ValueError(f"unknown padding mode {padding!r}; choose one of {PADDING_MODES}")
    if x.shape[0] != ddf.shape[0]:
        n = max(x.shape[0], ddf.shape[0])
        x, ddf = x.expand(n, *x.shape[1:]), ddf.expand(n, *ddf.shape[1:])
    if mode == "cubic" and ddf.dim() == 5:
        return _cubic_gather(x, ddf, padding)
    grid = _normalised_grid(ddf)
    torch_mode = {"linear": "bilinear", "cubic": "bicubic", "nearest": "nearest"}[mode]
    return F.grid_sample(x, grid.to(x.dtype), mode=torch_mode, padding_mode=padding, align_corners=True)


def resample_affine(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Resample one image ``(C, *spatial)`` at ``matrix @ [y; 1]`` for every output position ``y`` (normalised
    coordinates of :func:`torch.nn.functional.affine_grid`, ``align_corners=False``); linear, zero fill."""
    grid = F.affine_grid(matrix[None].to(x), [1, x.shape[0], *x.shape[1:]], align_corners=False)
    return F.grid_sample(x[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


def warp_labels(labels: torch.Tensor, ddf: torch.Tensor, method: str = "nearest") -> torch.Tensor:
    """Warp an integer label map so that label values are preserved exactly.

    Args:
        labels: ``(N, 1, *spatial)`` integer tensor (0 = background).
        ddf: ``(N, ndim, *spatial)`` displacement in voxels.
        method: ``"nearest"`` (nearest neighbour) or ``"onehot"`` (each label's indicator warped linearly,
            then arg-max; smoother boundaries). Positions outside the array become background (0).

    Returns:
        ``(N, 1, *spatial)`` tensor with ``labels``' dtype, containing only values present in ``labels`` (and 0).
    """
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError("labels must be an integer tensor")
    if labels.dim() < 3 or labels.shape[1] != 1:
        raise ValueError(f"labels must be (N, 1, *spatial), got shape {tuple(labels.shape)}")
    if method == "nearest":
        moved = warp(labels.to(ddf.dtype), ddf, mode="nearest", padding="zeros")
        return moved.round().to(labels.dtype)
    if method != "onehot":
        raise ValueError(f"unknown label method {method!r}; choose 'nearest' or 'onehot'")
    values = [int(v) for v in torch.unique(labels) if int(v) != 0]
    n = max(labels.shape[0], ddf.shape[0])
    best = torch.zeros((n, 1) + tuple(ddf.shape[2:]), dtype=ddf.dtype, device=ddf.device)
    best_prob = warp((labels == 0).to(ddf.dtype), ddf, mode="linear", padding="zeros")
    best_prob = best_prob + (1.0 - warp(torch.ones_like(labels, dtype=ddf.dtype), ddf, "linear", "zeros"))
    for value in values:
        prob = warp((labels == value).to(ddf.dtype), ddf, mode="linear", padding="zeros")
        better = prob > best_prob
        best = torch.where(better, torch.full_like(best, float(value)), best)
        best_prob = torch.where(better, prob, best_prob)
    return best.round().to(labels.dtype)


def compose(u: torch.Tensor, v: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """Compose two displacement fields: ``v + warp(u, v)`` (linear interpolation).

    Warping by the result equals warping by ``u`` first and then by ``v``:
    ``warp(warp(x, u), v) ≈ warp(x, compose(u, v))``. Both fields ``(N, ndim, *spatial)``, voxels.
    """
    return v + warp(u, v, mode="linear", padding=padding)


def integrate(velocity: torch.Tensor, steps: int, padding: str = "border") -> torch.Tensor:
    """Scaling and squaring: the displacement of ``exp(velocity)``.

    Args:
        velocity: ``(N, ndim, *spatial)`` stationary velocity, voxels.
        steps: number of squarings (the velocity is divided by ``2**steps`` first); 0 returns the velocity.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    ddf = velocity / (2.0**steps)
    for _ in range(steps):
        ddf = compose(ddf, ddf, padding=padding)
    return ddf


DIFFERENCE_SCHEMES = ("central", "forward", "backward")


def _one_sided_gradient(ddf: torch.Tensor, dim: int, forward: bool) -> torch.Tensor:
    """Forward (or backward) differences along ``dim``; the other one-sided difference at the last (first) index."""
    diff = ddf.diff(dim=dim)
    edge = diff.narrow(dim, diff.shape[dim] - 1, 1) if forward else diff.narrow(dim, 0, 1)
    return torch.cat([diff, edge], dim=dim) if forward else torch.cat([edge, diff], dim=dim)


def jacobian_determinant(ddf: torch.Tensor, differences: str = "central") -> torch.Tensor:
    """Determinant of the Jacobian of ``p -> p + ddf(p)`` in voxel units.

    With ``differences="central"`` (default) derivatives are central differences inside and one-sided
    differences on the faces (as ``numpy.gradient``); ``"forward"``/``"backward"`` use one-sided differences
    everywhere; along an axis one voxel thick (a single slice) the derivative is 0.
    ``ddf``: ``(N, ndim, *spatial)``, voxels. Returns ``(N, *spatial)``.
    """
    ndim = ddf.dim() - 2
    if ndim not in (2, 3) or ddf.shape[1] != ndim:
        raise ValueError(f"displacement field must be (N, ndim, *spatial) with ndim 2 or 3, got {tuple(ddf.shape)}")
    if max(ddf.shape[2:]) < 2:
        raise ValueError("a Jacobian needs a spatial axis of at least 2 voxels")
    if differences not in DIFFERENCE_SCHEMES:
        raise ValueError(f"unknown difference scheme {differences!r}; choose one of {DIFFERENCE_SCHEMES}")
    grads = []
    for axis in range(ndim):  # an axis one voxel thick (a single slice) has no change along it: derivative 0
        if ddf.shape[2 + axis] < 2:
            grads.append(torch.zeros_like(ddf))
        elif differences == "central":
            grads.append(torch.gradient(ddf, dim=2 + axis, edge_order=1)[0])
        else:
            grads.append(_one_sided_gradient(ddf, 2 + axis, differences == "forward"))
    # jac[c][a] = d(p_c + u_c) / d p_a
    jac = [[grads[a][:, c] + (1.0 if a == c else 0.0) for a in range(ndim)] for c in range(ndim)]
    if ndim == 2:
        return jac[0][0] * jac[1][1] - jac[0][1] * jac[1][0]
    return (
        jac[0][0] * (jac[1][1] * jac[2][2] - jac[1][2] * jac[2][1])
        - jac[0][1] * (jac[1][0] * jac[2][2] - jac[1][2] * jac[2][0])
        + jac[0][2] * (jac[1][0] * jac[2][1] - jac[1][1] * jac[2][0])
    )


def jacobian_determinant_slabs(ddf: torch.Tensor, slab: int = 16, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """:func:`jacobian_determinant` (central differences) computed in float64 over slabs of ``slab`` planes
    along the first spatial axis, stored as ``dtype``: the same values with a small working memory, for
    full-resolution fields (a slab carries one halo plane on each side, so interior differences match)."""
    length = ddf.shape[2]
    if length <= slab + 2:
        return jacobian_determinant(ddf.to(torch.float64)).to(dtype)
    out = torch.empty((ddf.shape[0],) + tuple(ddf.shape[2:]), dtype=dtype, device=ddf.device)
    for start in range(0, length, slab):
        stop = min(start + slab, length)
        lo, hi = max(start - 1, 0), min(stop + 1, length)
        det = jacobian_determinant(ddf[:, :, lo:hi].to(torch.float64))
        out[:, start:stop] = det[:, start - lo: start - lo + (stop - start)].to(dtype)
    return out


def folds(ddf: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: some voxel has ``det J <= 0`` with central, forward or backward differences.

    Requiring all three keeps a field fold-free however it is later cropped or measured (a crop's faces use
    the one-sided differences of the larger grid).
    """
    return torch.stack([(jacobian_determinant(ddf, scheme) <= 0).flatten(1).any(1) for scheme in DIFFERENCE_SCHEMES]).any(0)


def interior(volume: torch.Tensor, margin: int = 1) -> torch.Tensor:
    """The ``(N, *spatial)`` tensor without ``margin`` voxels at every face."""
    if margin <= 0:
        return volume
    index = (slice(None),) + tuple(slice(margin, s - margin) for s in volume.shape[1:])
    return volume[index]


def folding_fraction(ddf: torch.Tensor, margin: int = 0) -> torch.Tensor:
    """Fraction of voxels with ``det J <= 0``, per batch element: ``(N,)``.

    ``margin`` voxels at each face are left out (``margin=1``: interior voxels only, where the central
    differences apply).
    """
    det = interior(jacobian_determinant(ddf), margin)
    return (det <= 0).flatten(1).to(torch.float64).mean(dim=1)
