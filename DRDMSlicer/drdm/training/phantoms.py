"""Procedural test images with labels (no downloads): cardiac-like slices (2D) and volumes (3D).

Labels follow the ACDC convention: 1 right-ventricle cavity, 2 myocardium, 3 left-ventricle cavity.
Intensities are in [0, 1] with a dark background, as the reference models expect.
"""

from __future__ import annotations

import math

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


def _smooth_noise(size: int, cells: int, generator: torch.Generator) -> torch.Tensor:
    """Standard-normal values on a ``cells``² grid, bilinearly resized to ``size``²."""
    z = torch.randn((1, 1, max(cells, 2), max(cells, 2)), generator=generator)
    return F.interpolate(z, size=(size, size), mode="bilinear", align_corners=False)[0, 0]


def _blob(y: torch.Tensor, x: torch.Tensor, centre: tuple[float, float], radii: tuple[float, float], angle: float,
          wobble: list[tuple[float, float]]) -> torch.Tensor:
    """Normalised radius of a rotated ellipse whose boundary is modulated by harmonics 2, 3, …: inside is ``<= 1``.

    ``y``, ``x``: coordinates in [-1, 1]; ``centre``/``radii``: ``(y, x)`` in the same units; ``wobble``:
    ``(amplitude, phase)`` of each harmonic, amplitudes relative to the radius.
    """
    c, s = math.cos(angle), math.sin(angle)
    dy, dx = y - centre[0], x - centre[1]
    u, v = (c * dx + s * dy) / radii[1], (c * dy - s * dx) / radii[0]
    theta = torch.atan2(v, u)
    boundary = 1.0 + sum(a * torch.cos(k * theta + p) for k, (a, p) in enumerate(wobble, start=2))
    return torch.sqrt(u**2 + v**2) / boundary


def cardiac_short_axis_phantom(size: int = 256, seed: int = 0, noise: float = 0.015) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2D cardiac MRI short-axis-like slice, framed like the authors' preprocessed CMR images (heart centred,
    about 40 % of the field of view).

    Bright left-ventricle blood pool with two papillary muscles, dark myocardial ring, right-ventricle
    crescent, epicardial and subcutaneous fat, dark lungs, liver, descending aorta and spine; irregular
    (harmonic) boundaries, smooth and fine texture, a partial-volume blur and acquisition noise of standard
    deviation ``noise``. The published ``cmr-2d`` model recovers its deformations (recovery error < 1,
    ``Testing/model_store/test_bundled_model.py``), which the plain :func:`cardiac_phantom` does not do reliably.

    Args:
        size: side of the square grid (voxels, at least 16).
        seed: seed of the shape, position and texture variations.
        noise: standard deviation of the additive noise (intensities before the final [0, 1] rescaling).

    Returns:
        ``(image, labels)``: float32 ``(1, 1, size, size)`` in [0, 1] and int64 labels of the same shape
        (ACDC convention: 1 right-ventricle cavity, 2 myocardium, 3 left-ventricle cavity).
    """
    if size < 16:
        raise ValueError(f"size must be at least 16, got {size}")
    generator = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float) -> float:
        return float(low + (high - low) * torch.rand((), generator=generator))

    def wobble(count: int, amplitude: float) -> list[tuple[float, float]]:
        return [(uniform(0, amplitude), uniform(0, 2 * math.pi)) for _ in range(count)]

    axis = torch.linspace(-1, 1, size)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    image = torch.zeros(size, size)

    def paint(region: torch.Tensor, value: float) -> None:
        image[region] = value

    body = _blob(y, x, (0.1, 0.0), (1.05, 1.2), uniform(-0.1, 0.1), wobble(3, 0.03))
    inner_body = body <= 0.93
    paint(body <= 1, 0.75)  # subcutaneous fat
    paint(inner_body, 0.22)  # chest wall and mediastinum
    for side in (-1, 1):
        lung = _blob(y, x, (-0.45 + uniform(-0.05, 0.05), 0.62 * side), (0.55, 0.33), 0.3 * side, wobble(3, 0.08))
        paint(lung <= 1, 0.04)
    paint((_blob(y, x, (0.85, -0.45), (0.45, 0.7), 0.2, wobble(3, 0.05)) <= 1) & inner_body, 0.38)  # liver

    cy, cx, angle = uniform(-0.05, 0.1), uniform(0.0, 0.15), uniform(-0.5, 0.5)
    cavity, wall = uniform(0.24, 0.29), uniform(0.08, 0.11)
    fat = _blob(y, x, (cy, cx), (cavity + wall + 0.07, cavity + wall + 0.1), angle, wobble(4, 0.08))
    epicardium = _blob(y, x, (cy, cx), (cavity + wall, cavity + wall + 0.02), angle, wobble(3, 0.03)) <= 1
    lv = _blob(y, x, (cy, cx), (cavity, cavity + 0.02), angle, wobble(4, 0.05)) <= 1
    rv_centre = (cy + 0.08, cx - 0.3)
    rv = (_blob(y, x, rv_centre, (uniform(0.36, 0.42), uniform(0.26, 0.32)), angle - 0.4, wobble(3, 0.05)) <= 1) & ~epicardium
    rv_wall = _blob(y, x, rv_centre, (0.45, 0.35), angle - 0.4, wobble(3, 0.03)) <= 1
    paint((fat <= 1) & inner_body, 0.6)
    paint(rv_wall | epicardium, 0.3)
    paint(rv, 0.8)
    paint(lv, 0.9)
    for k in range(2):  # papillary muscles
        a = angle + uniform(0.6, 1.2) + 0.8 * math.pi * k
        centre = (cy + 0.6 * cavity * math.sin(a), cx + 0.6 * cavity * math.cos(a))
        paint(_blob(y, x, centre, (0.05, 0.04), a, wobble(2, 0.1)) <= 1, 0.35)
    paint(_blob(y, x, (cy + 0.55, cx + 0.5), (0.12, 0.12), 0.0, wobble(2, 0.03)) <= 1, 0.85)  # descending aorta
    paint(_blob(y, x, (0.85, 0.4), (0.14, 0.2), 0.2, wobble(2, 0.05)) <= 1, 0.5)  # vertebra

    labels = torch.zeros(size, size, dtype=torch.int64)
    labels[rv] = 1
    labels[epicardium & ~lv] = 2
    labels[lv] = 3

    texture = 0.06 * _smooth_noise(size, size // 16, generator) + 0.03 * _smooth_noise(size, size // 4, generator)
    image = (image + texture * (image > 0.05)).clamp(0, 1)
    kernel = torch.tensor([0.25, 0.5, 0.25])
    blur = (kernel[:, None] * kernel[None, :])[None, None]
    image = F.conv2d(F.pad(image[None, None], (1, 1, 1, 1), mode="replicate"), blur)[0, 0]
    image = (image + noise * torch.randn(image.shape, generator=generator)).clamp(0, 1)
    image = (image - image.min()) / (image.max() - image.min())
    return image.reshape(1, 1, size, size).float(), labels.reshape(1, 1, size, size)
