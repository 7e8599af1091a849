"""Procedural test images with labels (no downloads): a cardiac-like short-axis slice (2D) or volume (3D).

Labels follow the ACDC convention: 1 right-ventricle cavity, 2 myocardium, 3 left-ventricle cavity.
Intensities are in [0, 1] with a dark background, as the reference models expect.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cardiac_phantom(size: int = 256, ndims: int = 2, seed: int = 0, texture: float = 0.04,
                    fine_texture: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A cardiac-like phantom.

    Args:
        size: side of the square / cubic grid (voxels).
        ndims: 2 (short-axis slice) or 3 (stack of slices, tapering towards the apex).
        seed: seed of the smooth texture and of small shape variations.
        texture: amplitude of a smooth texture (cells of size/16) inside the body.
        fine_texture: amplitude of a finer texture (cells of 4 voxels) inside the body; training phantoms use
            it so that deformations are visible away from the organ boundaries too.

    Returns:
        ``(image, labels)``: float32 ``(1, 1, *[size]*ndims)`` in [0, 1] and int64 labels of the same shape.
    """
    if ndims not in (2, 3):
        raise ValueError(f"ndims must be 2 or 3, got {ndims}")
    if size < 16:
        raise ValueError(f"size must be at least 16, got {size}")
    generator = torch.Generator().manual_seed(seed)
    jitter = (torch.rand(6, generator=generator) - 0.5) * 0.06
    axes = [torch.linspace(-1, 1, size) for _ in range(ndims)]
    grid = torch.meshgrid(*axes, indexing="ij")
    y, x = grid[-2], grid[-1]
    # in 3D the heart tapers along the first axis (base -> apex)
    taper = torch.ones_like(x) if ndims == 2 else (1.0 - 0.35 * (grid[0] + 1) / 2).clamp(min=0.3)

    def ellipse(cy: float, cx: float, ry: float, rx: float) -> torch.Tensor:
        return ((y - cy) / (ry * taper)) ** 2 + ((x - cx) / (rx * taper)) ** 2 <= 1.0

    body = ((y / 0.85) ** 2 + (x / 0.95) ** 2) <= 1.0
    lv_outer = ellipse(0.05 + jitter[0], 0.12 + jitter[1], 0.36 + jitter[2], 0.34)
    lv_inner = ellipse(0.05 + jitter[0], 0.12 + jitter[1], 0.24 + jitter[3], 0.22)
    rv = ellipse(0.0 + jitter[4], -0.32 + jitter[5], 0.34, 0.2) & ~lv_outer
    if ndims == 3:
        inside = (grid[0] > -0.9) & (grid[0] < 0.8)
        lv_outer, lv_inner, rv = lv_outer & inside, lv_inner & inside, rv & inside

    labels = torch.zeros(x.shape, dtype=torch.int64)
    labels[rv] = 1
    labels[lv_outer & ~lv_inner] = 2
    labels[lv_inner] = 3

    image = torch.zeros(x.shape)
    image[body] = 0.25
    image[rv] = 0.75
    image[labels == 2] = 0.45
    image[lv_inner] = 0.95
    smooth = torch.randn((1, 1) + (max(size // 16, 2),) * ndims, generator=generator)
    mode = "bilinear" if ndims == 2 else "trilinear"
    smooth = F.interpolate(smooth, size=(size,) * ndims, mode=mode, align_corners=False)[0, 0]
    image = image + texture * smooth * body
    if fine_texture:
        fine = torch.randn((1, 1) + (max(size // 4, 2),) * ndims, generator=generator)
        image = image + fine_texture * F.interpolate(fine, size=(size,) * ndims, mode=mode, align_corners=False)[0, 0] * body
    image = image.clamp(0, 1)
    image = image / image.max()
    return image.reshape((1, 1) + image.shape).float(), labels.reshape((1, 1) + labels.shape)
