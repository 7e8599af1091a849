"""Time of one network call and of one whole 2D 256² sample (reference mode, faithful: 80 calls) on this machine.

Reports medians and the overhead ratio = sample time / (network calls × one call), for the sampler as the physical
layer runs it (no field statistics on the model grid) and, interleaved in the same run as the baseline, with the
statistics the sampler computed on every sample before they became opt-in (``generate(statistics=True)``). Usage:
OMP_WAIT_POLICY=PASSIVE python benchmarks/sample_time.py [--runs 5] [--threads 2]
Writes benchmarks/results/sample_time.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from common import REPO, machine_description, published_model_and_sample
from drdm.sampler import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--level", type=int, default=48)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, image = published_model_and_sample()
    t = torch.tensor([40])
    calls = []
    with torch.no_grad():
        model.network(image, t)
        for _ in range(4 * args.runs):
            start = time.perf_counter()
            model.network(image, t)
            calls.append(time.perf_counter() - start)
    samples = {False: [], True: []}
    for seed in range(args.runs):
        for with_statistics in (False, True):  # interleaved: a noisy neighbour slows both alike
            start = time.perf_counter()
            result = generate(model, image, mode="reference", speed="faithful", start_level=args.level,
                              generator=torch.Generator().manual_seed(seed), statistics=with_statistics)
            samples[with_statistics].append(time.perf_counter() - start)
    call, sample = statistics.median(calls), statistics.median(samples[False])
    with_stats = statistics.median(samples[True])
    report = {"network_call_s": {"median": call, "min": min(calls), "max": max(calls)},
              "sample_s": {"median": sample, "min": min(samples[False]), "max": max(samples[False])},
              "sample_with_statistics_s": {"median": with_stats, "min": min(samples[True]), "max": max(samples[True])},
              "network_calls_per_sample": len(result.levels), "overhead_ratio": sample / (len(result.levels) * call),
              "overhead_ratio_with_statistics": with_stats / (len(result.levels) * call),
              "per_run_ratios": [s / (len(result.levels) * call) for s in samples[False]],
              "load_average": list(os.getloadavg()), "args": vars(args), "machine": machine_description()}
    (REPO / "benchmarks" / "results" / "sample_time.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
