"""Algorithm 4 (registration synthesis): a moving/fixed pair with a known ground-truth field.

``moving = φ_aug(I0)``: a DRDM deformation of the input. ``φ_syn``: a second DRDM deformation, generated for
the moving image. ``fixed = φ_syn ∘ φ_aug (I0)``: the input warped *once* by the composition of the two
pull fields (``u_fixed(x) = u_syn(x) + u_aug(x + u_syn(x))``), so the fixed image is not interpolated twice.

Direction of the ground truth: ``transform`` is the pull field ``u_syn`` on the fixed grid, i.e. for every
fixed-image point ``x`` the corresponding moving-image point is ``x + u_syn(x)`` and
``SimpleITK.Resample(moving, fixed, transform)`` reproduces the fixed image (up to the interpolation error of
resampling an already-resampled image). In registration terms it is the fixed-to-moving ("backward")
transform that an ITK/ANTs/elastix registration of *moving* onto *fixed* estimates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import SimpleITK as sitk

from ..models import DRDMModel
from ..physical.deform import INTERPOLATORS, DeformationResult, deform_image, warp_label_image
from ..physical.io import displacement_image, displacement_transform
from ..settings import DEFAULTS
from ..spatial import compose


@dataclass
class SynthesisResult:
    """A synthetic registration pair on the input's grid."""

    moving: sitk.Image
    moving_labels: sitk.Image | None
    fixed: sitk.Image
    fixed_labels: sitk.Image | None
    augmentation: DeformationResult  # φ_aug (input -> moving)
    synthesis: DeformationResult  # φ_syn (ground truth: fixed grid -> moving image)
    fixed_transform: sitk.Transform  # the composed field that produced the fixed image from the input

    @property
    def ground_truth(self) -> sitk.Transform:
        """φ_syn as an ITK transform (LPS mm): fixed-grid points to moving points (``transform.h5`` of a pair)."""
        return self.synthesis.transform


def synthesize_pair(model: DRDMModel, image: sitk.Image, labels: sitk.Image | None = None, *, level_aug: int,
                    level_syn: int, seed: int, mode: str = "diffeomorphic", speed: str = "faithful",
                    interpolation: str = "linear", label_method: str = "nearest", slices: str = DEFAULTS.slices,
                    progress: Callable[[int, int], None] | None = None,
                    precision: str = DEFAULTS.precision, magnitude: float | None = DEFAULTS.magnitude,
                    keep: Sequence[int] = DEFAULTS.keep, only: Sequence[int] = DEFAULTS.only,
                    margin: float = DEFAULTS.margin) -> SynthesisResult:
    """Build one moving/fixed pair (seeds ``seed`` for φ_aug and ``seed + 1`` for φ_syn); ``slices``, ``precision``,
    ``magnitude``, ``keep``, ``only``, ``margin`` as in :func:`drdm.physical.deform.deform_image`, for each of the two
    deformations (a 2D model on a volume: coherent by default, so φ_syn is smooth in 3D; φ_syn's regions are read
    from the moving labels)."""
    options = dict(mode=mode, speed=speed, interpolation=interpolation, label_method=label_method, progress=progress,
                   slices=slices, precision=precision, magnitude=magnitude, keep=keep, only=only, margin=margin)
    augmentation = deform_image(model, image, labels, level=level_aug, seed=seed, **options)
    synthesis = deform_image(model, augmentation.image, augmentation.labels, level=level_syn, seed=seed + 1, **options)
    total = compose(augmentation.ddf.double(), synthesis.ddf.double(), padding="border")
    fixed_transform = displacement_transform(displacement_image(total, image))
    fixed = sitk.Resample(image, image, fixed_transform, INTERPOLATORS[interpolation], 0.0, image.GetPixelID())
    fixed_labels = warp_label_image(labels, fixed_transform, label_method) if labels is not None else None
    return SynthesisResult(moving=augmentation.image, moving_labels=augmentation.labels, fixed=fixed,
                           fixed_labels=fixed_labels, augmentation=augmentation, synthesis=synthesis,
                           fixed_transform=fixed_transform)
