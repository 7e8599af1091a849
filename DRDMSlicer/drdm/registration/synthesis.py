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

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from ..models import DRDMModel
from ..physical.deform import INTERPOLATORS, DeformationResult, add_inverse, deform_image, warp_label_image
from ..physical.io import (
    displacement_image,
    displacement_transform,
    spacing_array_order,
    staged_directory,
    write_image,
)
from ..physical.qa import save_qa_figure
from ..physical.sample_folder import write_field_files
from ..settings import DeformationSettings
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

    def save(self, folder: str | os.PathLike, *, title: str = "", inverse: bool = False, qa: bool = True) -> Path:
        """Write the pair folder that ``drdm evaluate`` (:func:`drdm.evaluate`) reads, as ``drdm synthesize`` does.

        Files: ``moving.nii.gz``, ``fixed.nii.gz`` (and ``moving_labels.nii.gz``, ``fixed_labels.nii.gz`` with
        labels), ``transform.h5`` (the ground truth: ``Resample(moving, fixed, transform)`` reproduces fixed),
        ``ddf.nii.gz``, ``jacobian.nii.gz``, ``stats.json`` and ``qa.png`` (``qa=False``: none); ``inverse=True``
        adds ``transform_inverse.h5`` (diffeomorphic mode) with its inverse consistency in ``stats.json``. The
        folder must not exist; it appears only when complete. Returns it.

        Example::

            pair = drdm.synthesize(image, labels, model="cmr-2d", seed=0)
            pair.save("pairs/case01_pair0")      # then: drdm evaluate pairs --predicted '{pair}/predicted.h5' ...
        """
        final = Path(folder)
        syn = self.synthesis
        if inverse:
            add_inverse(syn, self.moving)
        with staged_directory(final) as staging:
            write_image(self.moving, staging / "moving.nii.gz")
            write_image(self.fixed, staging / "fixed.nii.gz")
            if self.moving_labels is not None:
                write_image(self.moving_labels, staging / "moving_labels.nii.gz")
                write_image(self.fixed_labels, staging / "fixed_labels.nii.gz")
            write_field_files(staging, syn)  # the ground truth φ_syn, as a sample folder holds its field
            stats = {"ground_truth": syn.statistics, "augmentation": self.augmentation.statistics,
                     "direction": "transform.h5 maps fixed-grid points to moving-image points: "
                                  "Resample(moving, fixed, transform) reproduces fixed"}
            (staging / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
            if qa:
                labelled = self.moving_labels is not None
                save_qa_figure(staging / "qa.png", sitk.GetArrayFromImage(self.moving), sitk.GetArrayFromImage(self.fixed),
                               syn.ddf[0].numpy(), sitk.GetArrayFromImage(syn.jacobian), spacing_array_order(self.moving),
                               labels=sitk.GetArrayFromImage(self.moving_labels) if labelled else None,
                               deformed_labels=sitk.GetArrayFromImage(self.fixed_labels) if labelled else None,
                               slice_axis=syn.grid.slice_axis,
                               title=title or f"moving (left) and fixed (second), seed {syn.statistics['seed'] - 1}")
        return final


def synthesize_pair(model: DRDMModel, image: sitk.Image, labels: sitk.Image | None = None, *,
                    settings: DeformationSettings, level_syn: int | None = None,
                    progress: Callable[[int, int], None] | None = None) -> SynthesisResult:
    """Build one moving/fixed pair: φ_aug with ``settings`` (its level, None: the model's first; its seed, None: drawn
    once), φ_syn with the same settings at ``level_syn`` (None: φ_aug's level) and seed + 1. ``slices``,
    ``precision``, ``magnitude``, ``keep``, ``only``, ``margin`` apply to each of the two deformations as in
    :func:`drdm.physical.deform.deform_image` (a 2D model on a volume: coherent by default, so φ_syn is smooth in 3D;
    φ_syn's regions are read from the moving labels)."""
    settings = settings.for_model(model).but(count=1)
    syn_settings = settings.but(level=settings.level if level_syn is None else level_syn, seed=settings.seed + 1)
    interpolation, label_method = settings.interpolation, settings.label_method
    augmentation = deform_image(model, image, labels, settings=settings, progress=progress)
    synthesis = deform_image(model, augmentation.image, augmentation.labels, settings=syn_settings, progress=progress)
    total = compose(augmentation.ddf.double(), synthesis.ddf.double(), padding="border")
    fixed_transform = displacement_transform(displacement_image(total, image))
    fixed = sitk.Resample(image, image, fixed_transform, INTERPOLATORS[interpolation], 0.0, image.GetPixelID())
    fixed_labels = warp_label_image(labels, fixed_transform, label_method) if labels is not None else None
    return SynthesisResult(moving=augmentation.image, moving_labels=augmentation.labels, fixed=fixed,
                           fixed_labels=fixed_labels, augmentation=augmentation, synthesis=synthesis,
                           fixed_transform=fixed_transform)
