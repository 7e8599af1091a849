"""``--model auto``: the model that fits an input, decided from what the input says, with the reason.

The rule (stated in docs/cli.md and shown to the user with every automatic choice):

* ``$DRDM_MODEL`` set → that model (the user's standing choice);
* a 2D image (or a volume one slice thick) → ``cmr-2d``;
* CT-like intensities (Hounsfield units well below zero: 1st percentile ≤ −500) or a near-isotropic 3D volume
  (largest spacing < 2× the smallest) → ``lct-3d`` when it is in the cache, else ``random-field-3d``;
* a 3D stack with thick slices (largest spacing ≥ 2× the smallest, MR-like) → ``cmr-2d``, coherent slices.

An explicit model name or file is always obeyed (:func:`resolve_model`). Importing this module loads neither
torch nor NumPy nor SimpleITK (the Slicer module uses :func:`slices_choice_applies` before PyTorch is installed).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..settings import slices_option_applies

AUTO = "auto"
THICK_SLICE_RATIO = 2.0  # largest / smallest spacing from which a volume is a stack of slices
CT_AIR_THRESHOLD = -500.0  # 1st percentile at or below this (HU): CT-like
CT_PERCENTILE = 1.0
DOWNLOAD_SUFFIX = " (download)"  # a model list's item for a registry model fetched on first use (``lct-3d (download)``)


@dataclass(frozen=True)
class ModelChoice:
    """What to load and why: ``spec`` (a name or file for :func:`drdm.model_store.loading.load_model`) and ``reason``
    (``None`` when the user named the model)."""

    spec: str | None
    reason: str | None = None

    def line(self, loaded_name: str | None = None) -> str:
        """One line for the user, e.g. ``model: random-field-3d (auto: near-isotropic 3D volume; ...)``."""
        name = loaded_name or self.spec
        return f"model: {name}" + (f" (auto: {self.reason})" if self.reason else "")


def is_auto(spec: object) -> bool:
    """True for the automatic choice: ``None``, ``""`` or ``"auto"``."""
    return spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", AUTO))


def _lct_available() -> bool:
    from .download import verify

    try:
        return verify("lct-3d")
    except Exception:  # an unreadable cache counts as not downloaded
        return False


KNOWN_MODEL_DIMS = {"cmr-2d": 2, "random-field-2d": 2, "lct-3d": 3, "random-field-3d": 3}


def _volume_kind(image: Any) -> tuple[str, str]:
    """``("2d" | "stack" | "volume", description)`` from the geometry."""
    return geometry_kind(image.GetSize(), image.GetSpacing())


def geometry_kind(size: tuple[int, ...], spacing: tuple[float, ...]) -> tuple[str, str]:
    """``("2d" | "stack" | "volume", description)`` of an image of ``size`` voxels and ``spacing`` mm (any order)."""
    if len(size) == 2 or min(size) <= 1:
        return "2d", "2D image"
    ratio = max(spacing) / min(spacing)
    text = f"spacing {', '.join(f'{s:g}' for s in spacing)} mm"
    if ratio >= THICK_SLICE_RATIO:
        return "stack", f"stack of thick slices ({text})"
    return "volume", f"near-isotropic 3D volume ({text})"


def ct_like(image: Any) -> bool:
    """True when the intensities look like CT Hounsfield units (1st percentile ≤ −500)."""
    import numpy as np
    import SimpleITK as sitk

    values = sitk.GetArrayViewFromImage(image)
    step = max(1, values.size // 1_000_000)  # a strided subsample is plenty for a percentile
    return float(np.percentile(values.reshape(-1)[::step], CT_PERCENTILE)) <= CT_AIR_THRESHOLD


def choose_model(image: Any) -> ModelChoice:
    """The automatic model for ``image`` and the reason (see the module docstring for the rule)."""
    if os.environ.get("DRDM_MODEL"):
        return ModelChoice(os.environ["DRDM_MODEL"], "$DRDM_MODEL")
    kind, description = _volume_kind(image)
    if kind == "2d":
        return ModelChoice("cmr-2d", description)
    if ct_like(image):
        description = f"CT-like intensities (1st percentile ≤ {CT_AIR_THRESHOLD:g} HU), {description}"
    elif kind == "stack":
        return ModelChoice("cmr-2d", description)
    if _lct_available():
        return ModelChoice("lct-3d", description)
    return ModelChoice("random-field-3d", f"{description}; lct-3d not downloaded: drdm models fetch lct-3d")


def model_dims_hint(spec: str | None, size: tuple[int, ...], spacing: tuple[float, ...]) -> int | None:
    """The dimensionality of the model ``spec`` means for an image of ``size`` / ``spacing``, without reading voxels
    or loading anything (for front ends deciding what to show): known names, and for ``auto`` the geometry rule
    (2D image or thick-slice stack: 2; else 3; CT-like intensities, which turn a stack to a 3D model, are not
    looked at). ``None`` for files and cached names."""
    if is_auto(spec):
        if os.environ.get("DRDM_MODEL"):
            return KNOWN_MODEL_DIMS.get(os.environ["DRDM_MODEL"])
        return 2 if geometry_kind(tuple(size), tuple(spacing))[0] in ("2d", "stack") else 3
    return KNOWN_MODEL_DIMS.get(str(spec).removesuffix(DOWNLOAD_SUFFIX))


def slices_choice_applies(model: str | int | None, size: tuple[int, ...], spacing: tuple[float, ...]) -> bool:
    """Whether the coherent/independent slices choice matters for ``model`` (a name, ``auto`` or a dimensionality)
    on an image of ``size`` / ``spacing``: a 2D model on a 3D volume (torch-free, reads no voxels)."""
    ndims = model if isinstance(model, int) else model_dims_hint(model, size, spacing)
    return ndims is not None and slices_option_applies(ndims, tuple(size))


def resolve_model(spec: str | os.PathLike | None, image: Any | Callable[[], Any]) -> ModelChoice:
    """``spec`` as given (explicit names and files are obeyed), or :func:`choose_model` for ``auto``/``None``;
    ``image`` may be a function returning the image, called only for ``auto``."""
    if not is_auto(spec):
        return ModelChoice(str(spec))
    return choose_model(image() if callable(image) else image)
