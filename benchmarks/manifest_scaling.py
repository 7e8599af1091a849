"""Time the manifest bookkeeping of ``drdm augment`` for N finished jobs (no deformation is computed).

Each job's folder and ``stats.json`` are written untimed, as a finished job would leave them; only the manifest
work is timed, with two strategies:

* ``rewrite``: rebuild the whole manifest after every job (``write_manifest``, what ``drdm augment`` did until
  issue 13): every ``stats.json`` is read again after each job, quadratic in N;
* ``append``: :class:`drdm.physical.augmentation.Manifest` (what ``drdm augment`` does now): one rebuild at the start, one
  appended row per job, one rewrite from memory at the end, linear in N.

Usage: ``python benchmarks/manifest_scaling.py --jobs 500 2000`` (prints a Markdown table; ``--out FILE.md``
writes it too). Both strategies must end with the same manifest file; the script checks it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "DRDMSlicer"))
from drdm.physical.augmentation import Manifest, plan_jobs, write_manifest  # noqa: E402

STATS = {"mean_mm": 1.5, "p95_mm": 3.25, "folding_fraction": 0.0, "det_min": 0.71, "det_max": 1.38, "seed": 0}


def finish(out: Path, job) -> None:
    """What a finished job leaves behind, as far as the manifest is concerned."""
    folder = out / job.folder
    folder.mkdir()
    (folder / "stats.json").write_text(json.dumps(STATS, indent=2) + "\n", encoding="utf-8")


def run(strategy: str, count: int, root: Path) -> tuple[float, str]:
    """Seconds of manifest work for ``count`` jobs and the final manifest's text."""
    out = root / f"{strategy}-{count}" / "out"  # the same name: the manifests must be identical
    out.mkdir(parents=True)
    images = [(Path(f"/data/case{i:04d}.nii.gz"), None) for i in range(count)]
    jobs = plan_jobs(images, [48], 1, 0)
    shard = (0, 1)
    seconds = 0.0
    manifest = Manifest(out, shard)
    if strategy == "append":
        started = time.perf_counter()
        manifest.rebuild(jobs)
        seconds += time.perf_counter() - started
    for job in jobs:
        finish(out, job)
        started = time.perf_counter()
        if strategy == "append":
            manifest.add(job)
        else:
            write_manifest(out, jobs, shard)
        seconds += time.perf_counter() - started
    started = time.perf_counter()
    path = manifest.rewrite() if strategy == "append" else write_manifest(out, jobs, shard)
    seconds += time.perf_counter() - started
    return seconds, path.read_text(encoding="utf-8").replace(str(out.parent), "OUT")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[2000])
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = parser.parse_args()
    lines = ["| jobs | rewrite after each job (s) | append (s) | speed-up |", "|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="drdm-manifest-") as folder:
        for count in args.jobs:
            before, text_before = run("rewrite", count, Path(folder))
            after, text_after = run("append", count, Path(folder))
            if text_before != text_after:
                raise SystemExit(f"{count} jobs: the two strategies wrote different manifests")
            lines.append(f"| {count} | {before:.2f} | {after:.3f} | {before / after:.0f}× |")
            print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
