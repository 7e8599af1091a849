"""Algorithm 3 over a data set: every job of the plan (:mod:`drdm.physical.augmentation`) deformed and written as a
sample folder, resumable and shardable, with the manifest. The one loop of ``drdm augment`` and :func:`drdm.augment`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..models import DRDMModel
from ..settings import AUGMENT_BASE_SEED, DeformationSettings
from .augmentation import Manifest, image_stem, merge_when_complete, plan_jobs, shard_jobs
from .deform import deform_image
from .io import InputError, read_image, read_labels, staged_directory
from .sample_folder import sample_title, write_sample


def augment_data_set(model: DRDMModel, pairs: list[tuple[Path, Path | None]], out: Path, *,
                     settings: DeformationSettings, levels: Sequence[int] | None = None, per_level: int = 1,
                     shard: tuple[int, int] = (0, 1), qa: bool = True, progress: Callable[[int, int], None] | None = None,
                     report: Callable[[str], None] = print, magnitudes: Sequence[float] | None = None) -> Path:
    """Deform every (image, labels) of ``pairs`` at each of ``levels`` (default: the model's first level),
    ``per_level`` times, into one sample folder per job under ``out`` (an existing, writable folder); jobs already
    done are skipped, and only shard ``shard = (i, n)`` of the plan is run. ``progress(done, total)`` counts this
    run's samples; ``report`` gets one line about the plan. Returns the manifest written (``manifest.csv`` once
    every shard is done, else this shard's). ``settings``: mode, speed, interpolation, label method, slices, precision,
    keep, only, margin as in :func:`drdm.physical.deform.deform_image`; its seed numbers the jobs (job ``j`` uses
    ``seed + j``; None: :data:`drdm.settings.AUGMENT_BASE_SEED`, so a resumed run finds its samples); its level and
    count are not used (``levels``, ``per_level``). ``magnitudes``: sizes in mm instead of ``levels`` (at the model's
    first level; folders ``<stem>_<size>mm_seed<seed>``)."""
    if magnitudes and levels:
        raise InputError("sizes (magnitudes) and levels are alternatives: give one of them")
    levels = list(levels) if levels else [model.forward_process().first_level]
    seed = AUGMENT_BASE_SEED if settings.seed is None else int(settings.seed)
    jobs = plan_jobs(pairs, levels, per_level, seed, magnitudes=list(magnitudes or ()))
    mine = shard_jobs(jobs, shard)
    todo = [job for job in mine if not (out / job.folder).exists()]
    report(f"{len(jobs)} jobs in all, {len(mine)} in shard {shard[0]}/{shard[1]}, {len(mine) - len(todo)} already done")
    manifest = Manifest(out, shard)
    manifest.rebuild(mine)
    if progress is not None:
        progress(0, len(todo))
    for done, job in enumerate(todo, start=1):
        image = read_image(job.image)
        labels = read_labels(job.labels, image) if job.labels else None
        with staged_directory(out / job.folder) as staging:
            job_settings = settings.but(level=job.level, seed=job.seed, count=1, magnitude=job.magnitude)
            result = deform_image(model, image, labels, settings=job_settings)
            write_sample(staging, image, labels, result, sample_title(image_stem(job.image), result.statistics), qa=qa)
        manifest.add(job)
        if progress is not None:
            progress(done, len(todo))
    written = manifest.rewrite()
    if shard[1] > 1:
        written = merge_when_complete(out, jobs) or written
    return written
