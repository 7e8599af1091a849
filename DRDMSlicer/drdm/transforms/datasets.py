"""Pre-generated DRDM copies in a training pipeline: the originals and the copies of a ``drdm augment`` manifest,
mixed, as MONAI dataset items (dicts of file paths for ``Dataset`` / ``CacheDataset`` with ``LoadImaged``) or as a
TorchIO ``SubjectsDataset``.

Copies are made once (``drdm augment``, on a GPU if there is one: a CPU sample takes seconds), so a ``DataLoader``
only reads files. Each original appears ``originals`` times and is followed by its first ``copies`` copies (all by
default); shuffle in the ``DataLoader``. TorchIO is imported only by :func:`augmented_subjects`.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

from ..errors import DRDMError
from ..physical.augmentation import AugmentedSample, read_manifest


def _mix(samples: list[AugmentedSample], originals: int, copies: int | None,
         sources: Collection[str | os.PathLike] | None) -> list[tuple[Path, Path | None, Path, bool]]:
    """``(image, labels, original, is_copy)`` per item: each original ``originals`` times, then its copies."""
    if isinstance(originals, bool) or int(originals) != originals or originals < 0:
        raise DRDMError(f"originals must be a whole number of times (0 or more), got {originals!r}")
    if copies is not None and (isinstance(copies, bool) or int(copies) != copies or copies < 0):
        raise DRDMError(f"copies must be a whole number per original (0 or more) or None (all), got {copies!r}")
    wanted = None if sources is None else {Path(s).resolve() for s in sources}
    groups: dict[Path, list[AugmentedSample]] = {}
    for sample in samples:
        if wanted is None or sample.original.resolve() in wanted:
            groups.setdefault(sample.original, []).append(sample)
    if wanted is not None and len(groups) < len(wanted):
        found = {p.resolve() for p in groups}
        missing = sorted(str(p) for p in wanted - found)
        raise DRDMError(f"the manifest has no copies of {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}")
    items = []
    for original, group in groups.items():
        items += [(original, group[0].original_labels, original, False)] * int(originals)
        items += [(s.image, s.labels, original, True) for s in group[: None if copies is None else int(copies)]]
    if not items:
        raise DRDMError("the manifest holds no finished samples to train on")
    return items


def augmented_items(manifest: str | os.PathLike, *, originals: int = 1, copies: int | None = None,
                    image_key: str = "image", label_key: str = "label", root: str | os.PathLike | None = None,
                    sources: Collection[str | os.PathLike] | None = None) -> list[dict[str, Any]]:
    """The originals and copies of a ``drdm augment`` manifest as MONAI dataset items.

    Args:
        manifest: ``OUT/manifest.csv`` or the folder ``OUT``.
        originals: how many times each original appears (0: copies only).
        copies: at most this many copies per original, in manifest order (None: all).
        image_key, label_key: the dict keys of the image and label file paths (no label key without labels).
        root: the folder relative input paths in the manifest are read from (default: the current folder).
        sources: only these originals (file paths) and their copies, e.g. one fold's training images.

    Returns:
        ``[{image_key: path, label_key: path, "source": original path, "copy": bool}, …]`` (paths as strings),
        for ``monai.data.Dataset(items, transform=LoadImaged(keys=[image_key, label_key]) …)`` or ``CacheDataset``.

    Example::

        items = augmented_items("augmented/", originals=2, copies=8)
        data = monai.data.CacheDataset(items, transform=Compose([LoadImaged(["image", "label"]), ...]))
    """
    items = []
    for image, labels, original, copy in _mix(read_manifest(manifest, root), originals, copies, sources):
        item: dict[str, Any] = {image_key: str(image)}
        if labels is not None:
            item[label_key] = str(labels)
        items.append({**item, "source": str(original), "copy": copy})
    return items


def augmented_subjects(manifest: str | os.PathLike, *, originals: int = 1, copies: int | None = None,
                       image_key: str = "image", label_key: str = "label", root: str | os.PathLike | None = None,
                       sources: Collection[str | os.PathLike] | None = None, transform: Any = None) -> Any:
    """The same mix as :func:`augmented_items` as a ``torchio.SubjectsDataset`` (images read lazily by TorchIO):
    each subject holds ``image_key`` (``ScalarImage``), ``label_key`` (``LabelMap``, when there are labels),
    ``source`` and ``copy``; ``transform`` is the dataset's TorchIO transform.

    Example::

        subjects = augmented_subjects("augmented/", copies=8, transform=tio.RandomFlip())
        loader = torch.utils.data.DataLoader(subjects, batch_size=4, shuffle=True)
    """
    import torchio as tio

    subjects = []
    for image, labels, original, copy in _mix(read_manifest(manifest, root), originals, copies, sources):
        parts: dict[str, Any] = {image_key: tio.ScalarImage(image)}
        if labels is not None:
            parts[label_key] = tio.LabelMap(labels)
        subjects.append(tio.Subject(**parts, source=str(original), copy=copy))
    return tio.SubjectsDataset(subjects, transform=transform)
