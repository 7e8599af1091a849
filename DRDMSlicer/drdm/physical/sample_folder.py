"""The sample folder: the files one deformation is written as (CLI ``generate``/``augment``, web app export).

``image.nii.gz`` (deformed image), ``labels.nii.gz`` (deformed labels), ``transform.h5`` (ITK displacement-field
transform, LPS mm), ``ddf.nii.gz`` (the same field as a vector image), ``jacobian.nii.gz`` (det J),
``stats.json`` and ``qa.png``; with ``--inverse``, ``transform_inverse.h5`` (the inverse field, which maps
original-image points to deformed-image points: ``Resample(deformed, inverse)`` gives the original back).
"""

from __future__ import annotations

import json
from pathlib import Path

import SimpleITK as sitk

from .deform import DeformationResult
from .io import displacement_transform, spacing_array_order, write_image, write_transform
from .qa import save_qa_figure


def sample_name(stem: str, level: int, seed: int, magnitude: float | None = None, separator: str = "_") -> str:
    """The one name of a sample: ``<stem>_T<level>_seed<seed>``, or ``<stem>_<size>mm_seed<seed>`` when a size was
    asked (one seed at several sizes gives several samples). Folders of ``drdm generate``/``augment``, the Slicer
    module's exports and (``separator=" "``) nodes, the web app's exports."""
    setting = f"T{level}" if magnitude is None else f"{magnitude:g}mm"
    return separator.join((stem, setting, f"seed{seed}"))


def sample_title(stem: str, statistics: dict) -> str:
    """The one QA-picture title of a sample, from its ``statistics``: ``<stem>: T'=48, seed 3, diffeomorphic/fast,
    model cmr-2d[, size 5 mm]``."""
    title = (f"{stem}: T'={statistics['level']}, seed {statistics['seed']}, {statistics['mode']}/{statistics['speed']}, "
             f"model {statistics['model']}")
    size = statistics.get("magnitude_mm")
    return title if size is None else f"{title}, size {size:g} mm"


SAMPLE_FILES = ("image.nii.gz", "labels.nii.gz", "transform.h5", "ddf.nii.gz", "jacobian.nii.gz", "stats.json", "qa.png")


def write_field_files(folder: Path, result: DeformationResult) -> None:
    """A deformation's field files: ``transform.h5`` (and ``transform_inverse.h5`` when the inverse was added),
    ``ddf.nii.gz`` and ``jacobian.nii.gz`` (a sample folder's, and a registration pair's ground truth)."""
    write_transform(result.transform, folder / "transform.h5")
    if result.inverse_field is not None:
        write_transform(displacement_transform(result.inverse_field), folder / "transform_inverse.h5")
    write_image(result.field, folder / "ddf.nii.gz")
    write_image(result.jacobian, folder / "jacobian.nii.gz")


def write_sample(folder: Path, image: sitk.Image, labels: sitk.Image | None, result: DeformationResult,
                 title: str, qa: bool = True) -> None:
    """Write one sample's files into ``folder`` (a staging folder)."""
    write_image(result.image, folder / "image.nii.gz")
    if result.labels is not None:
        write_image(result.labels, folder / "labels.nii.gz")
    write_field_files(folder, result)
    (folder / "stats.json").write_text(json.dumps(result.statistics, indent=2) + "\n", encoding="utf-8")
    if not qa:
        return
    save_qa_figure(
        folder / "qa.png", sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(result.image), result.ddf[0].numpy(),
        sitk.GetArrayFromImage(result.jacobian), spacing_array_order(image),
        labels=sitk.GetArrayFromImage(labels) if labels is not None else None,
        deformed_labels=sitk.GetArrayFromImage(result.labels) if result.labels is not None else None,
        slice_axis=result.grid.slice_axis, title=title, held=result.held)
