"""Algorithm 3 (augmentation) as a resumable, shardable job list with a CSV manifest.

Every (image, level, repeat) triple is one job with a fixed seed (``base_seed + job index``) and a fixed
output folder name, so a run can stop at any time and start again (finished folders are skipped), and
``--shard i/n`` on ``n`` machines (or ``torchrun --nproc-per-node n -m drdm augment …`` on one node, each
process its own GPU: :mod:`drdm.training.torchrun`) splits the same list without coordination (job ``j`` belongs to shard
``j mod n``). Each shard writes its own manifest file; the shard that finds every job of the list done also
writes ``manifest.csv`` (the single-process run's manifest, row for row).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .io import IMAGE_SUFFIXES, InputError, write_text
from .sample_folder import sample_name

MANIFEST_COLUMNS = ("job", "image", "labels", "level", "seed", "folder", "out_image", "out_labels", "transform",
                    "mean_mm", "p95_mm", "folding_fraction", "det_min", "det_max", "magnitude_mm")


@dataclass(frozen=True)
class Job:
    """One augmentation: deform ``image`` (and ``labels``) at ``level`` with ``seed`` into ``folder``; ``magnitude``:
    the size in mm asked for (None: the model's own)."""

    index: int
    image: Path
    labels: Path | None
    level: int
    seed: int
    folder: str
    magnitude: float | None = None


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


def plan_jobs(pairs: list[tuple[Path, Path | None]], levels: list[int], per_level: int, base_seed: int,
              magnitudes: list[float] | None = None) -> list[Job]:
    """The full, ordered job list (independent of sharding and of what is already done). With ``magnitudes`` (sizes
    in mm) the jobs run over the sizes, at ``levels[0]``, instead of over the levels."""
    jobs = []
    steps = [(levels[0], float(size)) for size in magnitudes] if magnitudes else [(level, None) for level in levels]
    for image, labels in pairs:
        for level, size in steps:
            for _ in range(per_level):
                index = len(jobs)
                seed = base_seed + index
                jobs.append(Job(index, image, labels, level, seed, sample_name(image_stem(image), level, seed, size), size))
    return jobs


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"`shard` must look like i/n (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise InputError(f"`shard` {text}: need 0 <= i < n")
    return index, count


def shard_jobs(jobs: list[Job], shard: tuple[int, int]) -> list[Job]:
    index, count = shard
    return [job for job in jobs if job.index % count == index]


def manifest_path(out: Path, shard: tuple[int, int]) -> Path:
    """``out/manifest.csv``, or ``out/manifest-shard<i>of<n>.csv`` for one shard of several."""
    index, count = shard
    return out / ("manifest.csv" if count == 1 else f"manifest-shard{index}of{count}.csv")


def manifest_row(out: Path, job: Job) -> dict[str, object] | None:
    """The manifest row of a finished job (read from its ``stats.json``), ``None`` while it is not done."""
    folder = out / job.folder
    stats_file = folder / "stats.json"
    if not stats_file.is_file():
        return None
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    return {
        "job": job.index, "image": str(job.image), "labels": str(job.labels or ""), "level": job.level,
        "seed": job.seed, "folder": str(folder), "out_image": str(folder / "image.nii.gz"),
        "out_labels": str(folder / "labels.nii.gz") if job.labels else "", "transform": str(folder / "transform.h5"),
        "mean_mm": stats["mean_mm"], "p95_mm": stats["p95_mm"], "folding_fraction": stats["folding_fraction"],
        "det_min": stats["det_min"], "det_max": stats["det_max"],
        "magnitude_mm": "" if job.magnitude is None else job.magnitude,
    }


def _csv_text(rows: Iterable[dict[str, object]], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS)
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class Manifest:
    """One shard's manifest, kept up to date while its jobs finish, in time linear in the number of jobs.

    :meth:`rebuild` reads every finished job's ``stats.json`` once and rewrites the file (at the start of a run:
    it also repairs a file cut short by a killed run); :meth:`add` reads one job's statistics and appends one
    row; :meth:`rewrite` writes the rows held in memory in job order (at the end of a run). Rewrites are
    atomic; an interrupted append loses at most that row until the next run rebuilds the file.
    """

    def __init__(self, out: Path, shard: tuple[int, int]) -> None:
        self.out, self.path = out, manifest_path(out, shard)
        self.rows: dict[int, dict[str, object]] = {}

    def rebuild(self, jobs: Iterable[Job]) -> Path:
        """Rows of every finished job in ``jobs``; the file is rewritten from them."""
        rows = ((job.index, manifest_row(self.out, job)) for job in jobs)
        self.rows = {index: row for index, row in rows if row is not None}
        return self.rewrite()

    def add(self, job: Job) -> None:
        """Append the row of ``job``, which has just finished."""
        row = manifest_row(self.out, job)
        if row is None:
            raise InputError(f"{self.out / job.folder}: the job finished without stats.json")
        self.rows[job.index] = row
        with open(self.path, "a", encoding="utf-8", newline="") as handle:
            handle.write(_csv_text([row], header=False))

    def rewrite(self) -> Path:
        """Write the file atomically from the rows held, in job order; returns its path."""
        return write_text(_csv_text((self.rows[index] for index in sorted(self.rows)), header=True), self.path)


def write_manifest(out: Path, jobs: list[Job], shard: tuple[int, int]) -> Path:
    """Write the manifest of this shard's finished jobs (atomically); returns its path."""
    return Manifest(out, shard).rebuild(jobs)


def merge_when_complete(out: Path, jobs: list[Job]) -> Path | None:
    """When every job of ``jobs`` is done, write ``out/manifest.csv`` from all of them (the single-process run's
    manifest, row for row; the shard manifests stay); returns its path, or ``None`` while jobs are missing."""
    rows = [manifest_row(out, job) for job in jobs]
    if any(row is None for row in rows):
        return None
    return write_text(_csv_text(rows, header=True), manifest_path(out, (0, 1)))


@dataclass(frozen=True)
class AugmentedSample:
    """One finished row of a manifest, its files resolved: ``original`` / ``original_labels`` (the input image and
    labels), ``image`` / ``labels`` (the deformed copy's, in its sample folder), what made it (``level``, ``seed``,
    ``magnitude_mm`` asked) and its size (``mean_mm``: mean |u| in mm, ``folding_fraction``: det J ≤ 0)."""

    original: Path
    original_labels: Path | None
    image: Path
    labels: Path | None
    level: int
    seed: int
    magnitude_mm: float | None
    mean_mm: float
    folding_fraction: float


def _existing(path: Path, manifest: Path, what: str, hint: str = "") -> Path:
    if not path.is_file():
        raise InputError(f"manifest {manifest}: {what} {path} is not there{hint}")
    return path


def read_manifest(manifest: str | Path, root: str | Path | None = None) -> list[AugmentedSample]:
    """The rows of a ``drdm augment`` manifest (``manifest.csv``, or its folder), every file checked.

    Copies are found in their sample folders beside the manifest (so the output folder may move); the originals'
    paths are as ``drdm augment`` was given them: a relative one is read from ``root`` (default: the current
    folder; pass the folder ``drdm augment`` ran in). A missing file raises one :class:`InputError` line.
    """
    path = Path(manifest)
    path = path / "manifest.csv" if path.is_dir() else path
    if not path.is_file():
        raise InputError(f"manifest {path}: no such file (drdm augment writes OUT/manifest.csv)")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"image", "labels", "folder", "out_labels", "level", "seed"} <= set(rows[0]):
        raise InputError(f"manifest {path}: not a drdm augment manifest (columns {', '.join(MANIFEST_COLUMNS)})")
    base = Path.cwd() if root is None else Path(root)
    hint = f" (relative input paths are read from {base}: pass root= the folder drdm augment ran in)"
    samples = []
    for row in rows:
        original = Path(row["image"]) if Path(row["image"]).is_absolute() else base / row["image"]
        original_labels = None
        if row["labels"]:
            original_labels = Path(row["labels"]) if Path(row["labels"]).is_absolute() else base / row["labels"]
            _existing(original_labels, path, "labels", hint)
        folder = path.parent / Path(row["folder"]).name
        samples.append(AugmentedSample(
            original=_existing(original, path, "image", hint), original_labels=original_labels,
            image=_existing(folder / "image.nii.gz", path, "deformed image"),
            labels=_existing(folder / "labels.nii.gz", path, "deformed labels") if row["out_labels"] else None,
            level=int(row["level"]), seed=int(row["seed"]),
            magnitude_mm=float(row["magnitude_mm"]) if row.get("magnitude_mm") else None,
            mean_mm=float(row["mean_mm"]), folding_fraction=float(row["folding_fraction"])))
    return samples
