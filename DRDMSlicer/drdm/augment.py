"""Algorithm 3 (augmentation) as a resumable, shardable job list with a CSV manifest.

Every (image, level, repeat) triple is one job with a fixed seed (``base_seed + job index``) and a fixed
output folder name, so a run can stop at any time and start again (finished folders are skipped), and
``--shard i/n`` on ``n`` machines splits the same list without coordination (job ``j`` belongs to shard
``j mod n``). Each shard writes its own manifest file.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .io import IMAGE_SUFFIXES, InputError

MANIFEST_COLUMNS = ("job", "image", "labels", "level", "seed", "folder", "out_image", "out_labels", "transform",
                    "mean_mm", "p95_mm", "folding_fraction", "det_min", "det_max")


@dataclass(frozen=True)
class Job:
    """One augmentation: deform ``image`` (and ``labels``) at ``level`` with ``seed`` into ``folder``."""

    index: int
    image: Path
    labels: Path | None
    level: int
    seed: int
    folder: str


def image_stem(path: Path) -> str:
    """File name without its image extension (``.nii.gz`` counts as one)."""
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def find_inputs(inputs: Iterable[str | Path], label_suffix: str | None) -> list[tuple[Path, Path | None]]:
    """Images from files and folders (sorted), each paired with ``<stem><label_suffix><ext>`` if that exists.

    Files whose stem ends with ``label_suffix`` are labels, not inputs.
    """
    images: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images += sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))
        elif path.is_file():
            images.append(path)
        else:
            raise InputError(f"input {path}: no such file or folder")
    pairs = []
    for image in images:
        stem = image_stem(image)
        if label_suffix and stem.endswith(label_suffix):
            continue
        labels = None
        if label_suffix:
            candidate = image.with_name(stem + label_suffix + image.name[len(stem):])
            labels = candidate if candidate.is_file() else None
        pairs.append((image, labels))
    if not pairs:
        raise InputError("no input images found")
    stems = [image_stem(p) for p, _ in pairs]
    if len(set(stems)) != len(stems):
        raise InputError("input images must have distinct file names (they name the output folders)")
    return pairs


def plan_jobs(pairs: list[tuple[Path, Path | None]], levels: list[int], per_level: int, base_seed: int) -> list[Job]:
    """The full, ordered job list (independent of sharding and of what is already done)."""
    jobs = []
    for image, labels in pairs:
        for level in levels:
            for _ in range(per_level):
                index = len(jobs)
                seed = base_seed + index
                jobs.append(Job(index, image, labels, level, seed, f"{image_stem(image)}_T{level}_seed{seed}"))
    return jobs


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise InputError(f"--shard {text}: need 0 <= i < n")
    return index, count


def shard_jobs(jobs: list[Job], shard: tuple[int, int]) -> list[Job]:
    index, count = shard
    return [job for job in jobs if job.index % count == index]


def write_manifest(out: Path, jobs: list[Job], shard: tuple[int, int]) -> Path:
    """Write the manifest of this shard's finished jobs (atomically); returns its path."""
    index, count = shard
    name = "manifest.csv" if count == 1 else f"manifest-shard{index}of{count}.csv"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS)
    writer.writeheader()
    for job in jobs:
        folder = out / job.folder
        stats_file = folder / "stats.json"
        if not stats_file.is_file():
            continue
        stats = json.loads(stats_file.read_text(encoding="utf-8"))
        writer.writerow({
            "job": job.index, "image": str(job.image), "labels": str(job.labels or ""), "level": job.level,
            "seed": job.seed, "folder": str(folder), "out_image": str(folder / "image.nii.gz"),
            "out_labels": str(folder / "labels.nii.gz") if job.labels else "", "transform": str(folder / "transform.h5"),
            "mean_mm": stats["mean_mm"], "p95_mm": stats["p95_mm"], "folding_fraction": stats["folding_fraction"],
            "det_min": stats["det_min"], "det_max": stats["det_max"],
        })
    path = out / name
    temporary = out / f".{name}.partial-{os.getpid()}"
    temporary.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(temporary, path)
    return path
