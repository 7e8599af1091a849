"""DRDM deformations inside MONAI and TorchIO pipelines (optional extras ``drdm[monai]``, ``drdm[torchio]``).

Each library gets a random transform that draws (seed, level, model and, given ``magnitudes``, a size in mm) and a
deterministic one that replays them: ``RandDRDMDeformd`` / ``DRDMDeformd`` (MONAI dictionary transforms; the
parameters go to ``applied_operations``) and ``RandomDRDMDeformation`` / ``DRDMDeformation`` (TorchIO; the parameters
go to the subject's history). In diffeomorphic mode they are invertible (MONAI ``Compose.inverse`` / ``Invertd``,
TorchIO ``apply_inverse_transform``): the record keeps the applied field, undone with its numerical inverse. They are
imported lazily, so ``import drdm.transforms`` works without either library installed.

Pre-generated copies (``drdm augment``) in a pipeline: :func:`augmented_items` (MONAI ``Dataset``/``CacheDataset``
items) and :func:`augmented_subjects` (a TorchIO ``SubjectsDataset``) mix a manifest's originals and copies
(:mod:`drdm.transforms.datasets`).
"""

from __future__ import annotations

from .core import deform_channels_first
from .datasets import augmented_items, augmented_subjects

__all__ = ["deform_channels_first", "augmented_items", "augmented_subjects", "DRDMDeformd", "RandDRDMDeformd",
           "DRDMDeformation", "RandomDRDMDeformation"]


def __getattr__(name: str):
    if name in ("DRDMDeformd", "RandDRDMDeformd"):
        from . import monai_adapter

        return getattr(monai_adapter, name)
    if name in ("DRDMDeformation", "RandomDRDMDeformation"):
        from . import torchio_adapter

        return getattr(torchio_adapter, name)
    raise AttributeError(name)
