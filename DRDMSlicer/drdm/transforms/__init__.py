"""DRDM deformations inside MONAI and TorchIO pipelines (optional extras ``drdm[monai]``, ``drdm[torchio]``).

``RandDRDMDeformd`` (MONAI dictionary transform) and ``RandomDRDMDeformation`` (TorchIO transform) are
imported lazily, so ``import drdm.transforms`` works without either library installed.
"""

from __future__ import annotations

from .core import deform_channels_first

__all__ = ["deform_channels_first", "RandDRDMDeformd", "RandomDRDMDeformation"]


def __getattr__(name: str):
    if name == "RandDRDMDeformd":
        from .monai_adapter import RandDRDMDeformd

        return RandDRDMDeformd
    if name == "RandomDRDMDeformation":
        from .torchio_adapter import RandomDRDMDeformation

        return RandomDRDMDeformation
    raise AttributeError(name)
