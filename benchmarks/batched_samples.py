"""Samples per second for ``count`` samples: one sampler batch (``deform_images``) vs one by one (``deform_image``).

The middle slice of the CMR sample (2D, 216 × 256 at 1.5625 mm) as a SimpleITK image, the bundled cmr-2d model,
diffeomorphic mode; each way runs in a fresh process and the two alternate round by round (a noisy machine slows
both alike). Also reports the largest difference between the batched and the one-by-one fields (voxels).

Usage: OMP_WAIT_POLICY=PASSIVE python benchmarks/batched_samples.py [--count 8] [--speed fast] [--rounds 1]
Writes benchmarks/results/batched_samples.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import REPO, SHARED, write_results

WAYS = ("one-by-one", "batched")


def measure(way: str, count: int, speed: str, level: int) -> dict:
    """In this process: ``count`` samples (seeds 0 … count-1); seconds, samples/s and where the fields went."""
    from drdm.model_store.loading import load_model_spec
    from drdm.physical.deform import deform_image, deform_images
    from drdm.physical.io import read_image
    from drdm.settings import DeformationSettings

    model = load_model_spec("cmr-2d")
    volume = read_image(SHARED / "data" / "cmr" / "patient001_frame01.nii.gz")
    image = volume[:, :, volume.GetSize()[2] // 2]
    seeds = list(range(count))
    start = time.perf_counter()
    if way == "batched":
        results = deform_images(model, image, settings=DeformationSettings(level=level, seed=seeds[0], count=len(seeds),
                                                                           speed=speed), batch=True)
    else:
        results = [deform_image(model, image, settings=DeformationSettings(level=level, seed=s, mode="diffeomorphic",
            speed=speed)) for s in seeds]
    seconds = time.perf_counter() - start
    path = REPO / "benchmarks" / "results" / f".batched_{way}.pt"
    torch.save(torch.cat([r.ddf for r in results]), path)
    return {"seconds": seconds, "samples_per_s": count / seconds, "fields": str(path)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--speed", default="fast")
    parser.add_argument("--level", type=int, default=56)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: JSON [way, count, speed, level]
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(*json.loads(args.one))))
        return
    load = os.getloadavg()
    runs: dict[str, list[dict]] = {way: [] for way in WAYS}
    for index in range(args.rounds):
        for way in WAYS:
            out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--one",
                                  json.dumps([way, args.count, args.speed, args.level])], capture_output=True, text=True,
                                 check=True)
            runs[way].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(way, index, runs[way][-1], flush=True)
    fields = {way: torch.load(runs[way][-1]["fields"]) for way in WAYS}
    difference = float((fields["batched"] - fields["one-by-one"]).abs().max())
    for way in WAYS:
        Path(runs[way][-1]["fields"]).unlink(missing_ok=True)
    best = {way: max(r["samples_per_s"] for r in runs[way]) for way in WAYS}
    lines = [f"# {args.count} samples, CMR sample middle slice (cmr-2d), diffeomorphic/{args.speed}, T' = {args.level}, "
             f"{args.threads} threads", "",
             f"Load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.rounds} alternating round(s), "
             "fresh processes.", "", "| way | samples/s (best) | seconds for all (best) |", "|---|---|---|"]
    lines += [f"| {way} | {best[way]:.3f} | {min(r['seconds'] for r in runs[way]):.1f} |" for way in WAYS]
    lines += ["", f"Batched / one-by-one: {best['batched'] / best['one-by-one']:.2f}×; max |field difference| "
              f"{difference:.2e} voxels.", ""]
    write_results("batched_samples", {"args": vars(args), "load_average": load, "runs": runs,
                                      "max_field_difference_vox": difference}, lines)

if __name__ == "__main__":
    main()
