"""``drdm.deform_array(..., count=N)`` (one batched sampler call) against N calls of one sample each.

The middle slice of the ACDC sample (2D numpy array, 256 × 216 at 1.5625 mm, with its labels), the bundled cmr-2d
model, the API's defaults (diffeomorphic, ``fast``) unless told otherwise. Each round times both ways in the same
process, in alternating order (a noisy machine slows both alike); the ratio is taken within each round, and the
median over the rounds is reported. Also records the largest difference between the batched and the one-by-one
displacements (mm) and checks that the batched samples are bit for bit those of ``drdm.deform_image(count=N)``.

Usage: OMP_WAIT_POLICY=PASSIVE python benchmarks/array_batch.py [--count 8] [--speed fast] [--rounds 3]
Writes benchmarks/results/array_batch.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import SimpleITK as sitk
import torch
from common import SHARED, write_results


def acdc_slice() -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """The middle slice of ACDC patient001 frame01 (image, labels) as ``(y, x)`` arrays and its spacing (mm)."""
    folder = SHARED / "data" / "cmr"
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # the file's sform warning
    volume = sitk.ReadImage(str(folder / "patient001_frame01.nii.gz"))
    labels = sitk.ReadImage(str(folder / "patient001_frame01_gt.nii.gz"))
    middle = volume.GetSize()[2] // 2
    spacing = tuple(float(s) for s in volume.GetSpacing()[:2][::-1])
    return sitk.GetArrayFromImage(volume)[middle], sitk.GetArrayFromImage(labels)[middle], spacing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--speed", default="fast")
    parser.add_argument("--level", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import drdm

    image, labels, spacing = acdc_slice()
    model = drdm.load_model("cmr-2d", device="cpu")
    options = dict(model=model, level=args.level, speed=args.speed)
    drdm.deform_array(image, spacing, labels, seed=99, speed="faster", model=model)  # warm-up: first-call costs
    load = os.getloadavg()
    rounds = []
    for index in range(args.rounds):
        seconds, cpu = {}, {}
        for way in (("calls", "batched") if index % 2 == 0 else ("batched", "calls")):
            start, start_cpu = time.perf_counter(), time.process_time()
            if way == "batched":
                batched = drdm.deform_array(image, spacing, labels, seed=0, count=args.count, **options)
            else:
                calls = [drdm.deform_array(image, spacing, labels, seed=k, **options) for k in range(args.count)]
            seconds[way], cpu[way] = time.perf_counter() - start, time.process_time() - start_cpu
        rounds.append({**seconds, "ratio": seconds["calls"] / seconds["batched"], "cpu_s": cpu,
                       "cpu_ratio": cpu["calls"] / cpu["batched"], "load_after": os.getloadavg()})
        print(index, rounds[-1], flush=True)
    one_by_one = np.concatenate([c.displacement for c in calls])
    difference = float(np.abs(batched.displacement - one_by_one).max())
    through_image = sitk.GetImageFromArray(image)
    through_image.SetSpacing(spacing[::-1])
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(through_image)
    same = drdm.deform_image(through_image, label_image, seed=0, count=args.count, **options)
    identical = all(np.array_equal(batched.images[k], sitk.GetArrayFromImage(r.image))
                    and np.array_equal(batched.labels[k], sitk.GetArrayFromImage(r.labels)) for k, r in enumerate(same))
    ratio = statistics.median(r["ratio"] for r in rounds)
    calls_s = statistics.median(r["calls"] for r in rounds)
    batched_s = statistics.median(r["batched"] for r in rounds)
    lines = [f"# deform_array: count={args.count} in one batched call vs {args.count} calls (cmr-2d, {args.speed}, "
             f"T' = {args.level}, {args.threads} threads)", "",
             f"ACDC middle slice, 2D {image.shape[0]} × {image.shape[1]} at {spacing[0]} mm, with labels. "
             f"Load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.rounds} rounds in one process, "
             "the two ways in alternating order.", "",
             "| round | calls (s) | batched (s) | calls / batched | CPU time calls / batched (s) | CPU ratio |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {k} | {r['calls']:.1f} | {r['batched']:.1f} | {r['ratio']:.2f}× | {r['cpu_s']['calls']:.1f} / "
              f"{r['cpu_s']['batched']:.1f} | {r['cpu_ratio']:.2f}× |" for k, r in enumerate(rounds)]
    lines += ["", f"Median: {calls_s:.1f} s for {args.count} calls, {batched_s:.1f} s batched: **{ratio:.2f}×** "
              f"({args.count / batched_s:.3f} against {args.count / calls_s:.3f} samples/s).", "",
              f"Batched vs one-by-one samples: max |Δ displacement| {difference:.3g} mm (float32 rounding of batched "
              f"convolutions carried through the sampler); batched samples bit for bit those of "
              f"drdm.deform_image(count={args.count}): {identical}.", ""]
    write_results("array_batch", {"args": vars(args), "load_average_before": load, "rounds": rounds,
                                  "median_ratio": ratio, "median_calls_s": calls_s, "median_batched_s": batched_s,
                                  "max_displacement_difference_mm": difference,
                                  "identical_to_deform_image_count": identical}, lines)


if __name__ == "__main__":
    main()
