"""The forward deformation ("noise") process of DRDM (SPEC §4), with the reference presets.

Multi-scale random velocities are drawn on a control grid of ``G = 64`` cells, self-composed
``K_warp(t)`` times (the deforming field) and ``K_target(t)`` times (the training target), then lifted to
the image grid. :meth:`ForwardProcess.sample` returns both fields in voxels of the image grid, channel i
along array axis i.

``diffeomorphic=True`` keeps the random stream and the first-order magnitude of the reference fields but
integrates the velocity by scaling and squaring and lifts it geometrically, so the field does not fold
(the reference lift stretches displacements 2× at 256², which folds up to a third of the pixels). Where the
reference field hardly folds (2D 256², t ≤ 24) both have the same size; at higher levels the velocity is
scaled back until the field is fold-free (about 15–20 px mean at t ≥ 56 instead of 30–50 px, folded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .slice_stack import THROUGH_PLANE_CELL, SliceStack, coherent_normals, coherent_scales, scale_slope
from .spatial import folds, integrate, warp

PRESETS: dict[str, dict] = {
    # CMR (2D, 256²): cubic image/label warps, zero padding when the sampler composes fields.
    "cmr-2d": dict(ndims=2, image_size=256, image_interpolation="cubic", composition_padding="zeros", first_level=48),
    # Lung CT (3D, 128³): linear image/label warps, border padding when the sampler composes fields.
    "lct-3d": dict(ndims=3, image_size=128, image_interpolation="linear", composition_padding="border", first_level=64),
}
DIFFEOMORPHIC_SQUARINGS = 10  # scaling-and-squaring steps for the fold-free random field
MAX_BACKOFF = 30  # amplitude reductions (×0.8 each) tried before giving up on a folding element


@dataclass(frozen=True)
class ControlFields:
    """Intermediate fields of one forward draw on the control grid (control size units: 1.0 = G cells)."""

    velocity: torch.Tensor  # v
    noise: torch.Tensor  # ν, before it is warped
    noisy_velocity: torch.Tensor  # v' = v + W(ν; v)
    warp: torch.Tensor  # Φ: K_warp-fold composition of v'
    target: torch.Tensor  # Ψ: K_target-fold composition of v


@dataclass(frozen=True)
class ForwardProcess:
    """Configuration of the forward deformation process (defaults: the reference values of SPEC §4.1)."""

    ndims: int = 2
    image_size: int = 256
    control_size: int = 64
    velocity_scale: float = 4e-5
    noise_ratio: float = 0.08
    num_steps: int = 80
    max_compositions: int = 200
    image_interpolation: str = "cubic"
    composition_padding: str = "zeros"
    first_level: int = 48
    name: str = "custom"

    @classmethod
    def from_preset(cls, name: str, **overrides) -> ForwardProcess:
        """The reference configuration ``"cmr-2d"`` or ``"lct-3d"``, optionally with fields overridden."""
        if name not in PRESETS:
            raise ValueError(f"unknown noise preset {name!r}; choose one of {sorted(PRESETS)}")
        return replace(cls(name=name, **PRESETS[name]), **overrides)

    # -- schedule ---------------------------------------------------------------------------------

    @property
    def scales(self) -> tuple[int, ...]:
        """Control sizes of the velocity scales, finest first: (64, 32, 16, 8) for G = 64."""
        count = min(5, int(math.log2(self.control_size)) - 2)
        return tuple(self.control_size // 2**i for i in range(count))

    def composition_counts(self, t: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(K_warp(t), K_target(t))`` as int64 tensors; powers evaluated in float32 like the reference."""
        t = torch.as_tensor(t).to(torch.float32)
        k_warp = torch.clamp(torch.floor(2 * torch.pow(t, 1.3) / 3), 1, self.max_compositions)
        k_target = torch.floor(torch.pow(t, 0.6))
        return k_warp.long(), k_target.long()

    # -- random draws -----------------------------------------------------------------------------

    def draw_normals(self, batch: int = 1, generator: torch.Generator | None = None, stack: SliceStack | None = None,
                     size: int | None = None) -> list[torch.Tensor]:
        """The eight standard-normal tensors in reference order: 4 velocity scales, then 4 noise scales.

        ``stack``: the batch is ``batch // len(stack)`` stacks of neighbouring slices of a volume (2D model); each
        tensor is drawn smooth through each stack's slices (:func:`~drdm.slice_stack.coherent_normals`, node
        spacing :data:`~drdm.slice_stack.THROUGH_PLANE_CELL` × the scale's control cell, ``2·size/c`` working
        voxels), each slice keeping i.i.d. N(0, 1) values.
        """
        device = generator.device if generator is not None else torch.device("cpu")
        shapes = [(batch, self.ndims) + (c,) * self.ndims for c in self.scales]
        if stack is None:
            return [torch.randn(s, generator=generator, device=device) for s in shapes + shapes]
        if self.ndims != 2 or batch % len(stack):
            raise ValueError(f"coherent slices need a 2D process and a batch of whole stacks of {len(stack)} slices, "
                             f"got {self.ndims}D and a batch of {batch}")
        size = int(size or self.image_size)
        stacks = batch // len(stack)
        return [torch.cat([coherent_normals(stack, THROUGH_PLANE_CELL * 2.0 * size / s[-1], s[1:], generator, device)
                           for _ in range(stacks)])
                for s in shapes + shapes]

    def _multiscale(self, normals: list[torch.Tensor], amplitude: float) -> torch.Tensor:
        mode = "bilinear" if self.ndims == 2 else "trilinear"
        grid = (self.control_size,) * self.ndims
        total = 0
        for eps, c in zip(normals, self.scales):
            field = (eps * amplitude) * self.control_size / c
            total = total + F.interpolate(field, size=grid, mode=mode, align_corners=False)
        return total

    def velocities(self, normals: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(v, ν, v′)`` on the control grid (control size units) from the eight draws (SPEC §4.3–4.4)."""
        n = len(self.scales)
        velocity = self._multiscale(normals[:n], self.velocity_scale)
        noise = self._multiscale(normals[n:], self.noise_ratio * self.velocity_scale)
        noisy = velocity + warp(noise, velocity * self.control_size, "linear", "border")
        return velocity, noise, noisy

    def _levels(self, t: torch.Tensor | int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.as_tensor(t).reshape(-1).cpu()
        t = t.expand(batch) if t.numel() == 1 else t
        if t.numel() != batch:
            raise ValueError(f"{t.numel()} levels for a batch of {batch}")
        if t.is_floating_point() or int(t.min()) < 0:
            raise ValueError("levels must be non-negative integers")
        return self.composition_counts(t)

    def control_fields(self, t: torch.Tensor | int, normals: list[torch.Tensor]) -> ControlFields:
        """Reference fields on the control grid from the eight draws of :meth:`draw_normals` (SPEC §4.5).

        ``Φ`` is the ``K_warp(t)``-fold self-composition of ``v′`` and ``Ψ`` the ``K_target(t)``-fold one of
        ``v`` (border padding). Where the reference resamples by a zero step (a batch element whose count
        is exhausted) the field is left as it is; that differs from the reference by rounding only (< 1e-7).
        """
        g = self.control_size
        velocity, noise, noisy = self.velocities(normals)
        k_warp, k_target = self._levels(t, velocity.shape[0])
        phi = torch.zeros_like(velocity)
        psi = torch.zeros_like(velocity)
        for j in range(int(k_warp.max())):
            warp_on = (k_warp > j).tolist()
            target_on = (k_target > j).tolist()
            if any(warp_on):
                step = noisy if all(warp_on) else noisy * _mask(warp_on, noisy)
                phi = step + warp(phi, step * g, "linear", "border")  # Φ ⊕ step, control units
            if any(target_on):
                step = velocity if all(target_on) else velocity * _mask(target_on, velocity)
                psi = step + warp(psi, step * g, "linear", "border")
        return ControlFields(velocity, noise, noisy, phi, psi)

    def diffeomorphic_field(self, velocity: torch.Tensor, factor: torch.Tensor, size: int,
                            stack: SliceStack | None = None) -> torch.Tensor:
        """Fold-free counterpart of ``lift(K-fold composition of velocity)``, in voxels.

        The control-grid velocity (control size units) is lifted geometrically, multiplied by
        ``factor`` (per batch element: ``K · S / (2G)``, so the first-order size equals the reference's
        stretched field) and integrated on the image grid by scaling and squaring. Where the result folds
        (:func:`~drdm.spatial.folds`), that element's velocity is scaled by 0.8 and integrated again; with
        ``stack``, the neighbouring slices' scales follow smoothly (:func:`~drdm.slice_stack.coherent_scales`).
        """
        return self.diffeomorphic_field_and_velocity(velocity, factor, size, stack)[0]

    def diffeomorphic_field_and_velocity(self, velocity: torch.Tensor, factor: torch.Tensor, size: int,
                                         stack: SliceStack | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`diffeomorphic_field` and the stationary velocity it integrates (voxels, the same shape):
        ``field == integrate(velocity, DIFFEOMORPHIC_SQUARINGS, "border")`` bit for bit (a zero velocity where an
        element still folded after :data:`MAX_BACKOFF` reductions and its field is the identity)."""
        shape = (-1,) + (1,) * (velocity.dim() - 1)
        lifted = self.lift(velocity, size, geometric=True) * factor.to(velocity).reshape(shape)
        scale = torch.ones(velocity.shape[0], dtype=velocity.dtype, device=velocity.device)
        for _ in range(MAX_BACKOFF):
            used = lifted * scale.reshape(shape)
            field = integrate(used, DIFFEOMORPHIC_SQUARINGS, padding="border")
            folded = folds(field)
            if not bool(folded.any()):
                return field, used
            scale = torch.where(folded, scale * 0.8, scale)
            if stack is not None:
                scale = coherent_scales(scale, stack, scale_slope(size, min(self.scales)))
        identity = folded.reshape(shape)  # 0.8**30: identity
        return torch.where(identity, torch.zeros_like(field), field), torch.where(identity, torch.zeros_like(used), used)

    # -- lifting ----------------------------------------------------------------------------------

    def lift(self, field: torch.Tensor, size: int, geometric: bool = False) -> torch.Tensor:
        """Lift a control-grid field (control size units) to an image of side ``size``, in voxels.

        Reference: ``crop(resize_2S(F·S/G))`` in image size units (SPEC §4.6), times ``S`` for voxels.
        ``geometric=True``: one control cell spans ``2S/G`` voxels, i.e. the factor is 2 (no stretch).
        """
        g = self.control_size
        scaled = field * 2.0 if geometric else field * size / g
        mode = "bilinear" if self.ndims == 2 else "trilinear"
        big = F.interpolate(scaled, size=(2 * size,) * self.ndims, mode=mode, align_corners=False)
        lo, hi = size // 2, size // 2 + size
        crop = big[(slice(None), slice(None)) + (slice(lo, hi),) * self.ndims]
        return crop * size

    def sample(self, t: torch.Tensor | int, size: int | None = None, batch: int = 1,
               generator: torch.Generator | None = None, *, device: torch.device | str | None = None,
               diffeomorphic: bool = False, target: bool = True,
               stack: SliceStack | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Draw the forward deformation at level ``t``.

        Args:
            t: level (int) or ``(batch,)`` integer tensor of levels.
            size: image side ``S`` (square / cubic grid); default the preset's size.
            batch: number of independent fields.
            generator: random source; seeded like the reference's global seed it reproduces its fields.
            device: where the fields are computed (the draws come from ``generator``'s device).
            diffeomorphic: fold-free variant (see module docstring).
            target: False skips ``ddf_target`` (returned as ``None``; the sampler needs only ``ddf_warp``, and
                in diffeomorphic mode the target costs as much again). The random stream is the same.
            stack: the batch elements are neighbouring slices of a volume (stacks of ``len(stack)``): the draws
                are smooth through the slices with each slice's 2D statistics kept (:mod:`drdm.physical.slice_coherence`).

        Returns:
            ``(ddf_warp, ddf_target)``, each ``(batch, ndims, S, ..., S)`` in voxels: the field that deforms
            the image, and the (clean, fewer-composition) field the network learns to undo.
        """
        size = int(size or self.image_size)
        normals = self._normals(size, batch, generator, device, stack)
        if not diffeomorphic:
            fields = self.control_fields(t, normals)
            return self.lift(fields.warp, size), self.lift(fields.target, size) if target else None
        velocity, _, noisy = self.velocities(normals)
        k_warp, k_target = self._levels(t, batch)
        stretch = size / (2 * self.control_size)
        return (self.diffeomorphic_field(noisy, k_warp * stretch, size, stack),
                self.diffeomorphic_field(velocity, k_target * stretch, size, stack) if target else None)

    def sample_velocity(self, t: torch.Tensor | int, size: int | None = None, batch: int = 1,
                        generator: torch.Generator | None = None, *, device: torch.device | str | None = None,
                        stack: SliceStack | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ddf_warp, velocity)``: the diffeomorphic ``ddf_warp`` of :meth:`sample` (same draws, same bytes) and the
        stationary velocity it is the exponential of (voxels; ``integrate(velocity, DIFFEOMORPHIC_SQUARINGS)``)."""
        size = int(size or self.image_size)
        normals = self._normals(size, batch, generator, device, stack)
        _, _, noisy = self.velocities(normals)
        k_warp, _ = self._levels(t, batch)
        return self.diffeomorphic_field_and_velocity(noisy, k_warp * (size / (2 * self.control_size)), size, stack)

    def _normals(self, size: int, batch: int, generator: torch.Generator | None, device: torch.device | str | None,
                 stack: SliceStack | None) -> list[torch.Tensor]:
        if size < 2:
            raise ValueError(f"image size must be at least 2, got {size}")
        normals = self.draw_normals(batch, generator, stack, size)
        return normals if device is None else [z.to(device) for z in normals]


def _mask(flags: list[bool], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(flags, dtype=like.dtype, device=like.device).reshape((-1,) + (1,) * (like.dim() - 1))
