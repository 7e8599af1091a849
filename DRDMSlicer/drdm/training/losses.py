"""The DRDM training losses (SPEC §6, step 7): distance, angle and regularisation of the recovery field.

All fields are in the network's size units (1.0 = ``S`` voxels). ``Q`` is the prediction ``P`` resampled by
the target field (``W(P; D_target)``); the ideal is ``Q = −D_target``.

Two folding penalties are available:

* ``"paper"`` (default): ``mean(max(−det J(P), 0))`` with the true Jacobian determinant of the voxel map
  ``p ↦ p + S·P(p)`` (central differences). This is what the paper describes: a penalty on folding.
* ``"reference"``: the term as the authors' code computes it (SPEC §9.6): products of two axis-0 differences
  (and, in 3D, one axis-1 difference), no identity, size units; numerically almost inactive. Kept to
  reproduce their training.
"""

from __future__ import annotations

import torch

from ..spatial import jacobian_determinant

REGULARISERS = ("paper", "reference")
DIST_SCALE, ANGLE_SCALE = 100.0, 1e5
SMOOTH_THRESHOLD = 1e-4
FOLD_WEIGHT, REG_WEIGHT = 2.0, 10.0


def _backward_difference(x: torch.Tensor, dim: int) -> torch.Tensor:
    out = torch.zeros_like(x)
    index = [slice(None)] * x.dim()
    index[dim] = slice(1, None)
    out[tuple(index)] = torch.diff(x, dim=dim)
    return out


def _forward_difference(x: torch.Tensor, dim: int) -> torch.Tensor:
    out = torch.zeros_like(x)
    index = [slice(None)] * x.dim()
    index[dim] = slice(None, -1)
    out[tuple(index)] = torch.diff(x, dim=dim)
    return out


def reference_negative_jacobian(field: torch.Tensor) -> torch.Tensor:
    """The reference's "Jacobian" ``J̃`` (SPEC §6 step 7), ``(N, *spatial)``, from a size-unit field."""
    b0 = _backward_difference(field, 2)
    f0 = _forward_difference(field, 2)
    if field.dim() == 4:
        return b0[:, 0] * f0[:, 1] - b0[:, 1] * f0[:, 0]
    b1 = _backward_difference(field, 3)
    r0, r1, r2 = b0, f0, b1  # rows of the 3×3 matrix, each (N, 3, ...)
    return (r0[:, 0] * (r1[:, 1] * r2[:, 2] - r1[:, 2] * r2[:, 1])
            - r0[:, 1] * (r1[:, 0] * r2[:, 2] - r1[:, 2] * r2[:, 0])
            + r0[:, 2] * (r1[:, 0] * r2[:, 1] - r1[:, 1] * r2[:, 0]))


def smoothness_penalty(field: torch.Tensor) -> torch.Tensor:
    """``(1/n) Σ_a mean(max(|Δ_a P| − 1e-4, 0))`` with forward differences along each spatial axis."""
    ndims = field.dim() - 2
    terms = [torch.relu(torch.diff(field, dim=2 + a).abs() - SMOOTH_THRESHOLD).mean() for a in range(ndims)]
    return sum(terms) / ndims


def folding_penalty(field: torch.Tensor, regulariser: str = "paper") -> torch.Tensor:
    """``mean(max(−J, 0))`` with ``J`` the true det J (``"paper"``) or the reference's ``J̃``."""
    if regulariser == "paper":
        return torch.relu(-jacobian_determinant(field * field.shape[2])).mean()
    if regulariser == "reference":
        return torch.relu(-reference_negative_jacobian(field)).mean()
    raise ValueError(f"unknown regulariser {regulariser!r}; choose one of {REGULARISERS}")


def recovery_losses(prediction: torch.Tensor, aligned: torch.Tensor, target: torch.Tensor,
                    regulariser: str = "paper") -> dict[str, torch.Tensor]:
    """The training losses for a batch, computed in float32.

    Args:
        prediction: ``P``, network output ``(N, n, *spatial)`` in size units.
        aligned: ``Q = W(P; D_target)`` in size units.
        target: ``D_target`` in size units.
        regulariser: ``"paper"`` or ``"reference"`` folding term (module docstring).

    Returns:
        ``{"loss", "dist", "angle", "reg"}`` with ``loss = dist + angle + 10·reg``.
    """
    prediction, aligned, target = prediction.float(), aligned.float(), target.float()
    q, d = DIST_SCALE * aligned, DIST_SCALE * target
    dist = (((q + d) ** 2).sum(1) / ((d**2).sum(1) + 1e-3)).mean()
    q, d = ANGLE_SCALE * aligned, ANGLE_SCALE * target
    angle = ((q * d).sum(1) / torch.sqrt((q**2).sum(1) * (d**2).sum(1) + 1e-4)).mean()
    reg = smoothness_penalty(prediction) + FOLD_WEIGHT * folding_penalty(prediction, regulariser)
    return {"loss": dist + angle + REG_WEIGHT * reg, "dist": dist, "angle": angle, "reg": reg}


def relative_recovery_error(aligned: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``‖Q + D_target‖ / ‖D_target‖`` per batch element (root of summed squares over the whole field)."""
    error = (aligned + target).flatten(1).norm(dim=1)
    return error / target.flatten(1).norm(dim=1).clamp_min(1e-12)
