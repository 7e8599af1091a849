"""Time of one network call and of one whole 2D 256² sample (reference mode) on this machine.

Reports medians and the overhead ratio = sample time / (network calls × one call). Usage:
OMP_WAIT_POLICY=PASSIVE python benchmarks/sample_time.py [--runs 5] [--threads 2]
Writes benchmarks/results/sample_time.json.
"""

from __future__ import annotations

import argparse
import json
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
    samples = []
    for seed in range(args.runs):
        start = time.perf_counter()
        result = generate(model, image, mode="reference", speed="faithful", start_level=args.level,
                          generator=torch.Generator().manual_seed(seed))
        samples.append(time.perf_counter() - start)
    call, sample = statistics.median(calls), statistics.median(samples)
    report = {"network_call_s": {"median": call, "min": min(calls), "max": max(calls)},
              "sample_s": {"median": sample, "min": min(samples), "max": max(samples)},
              "network_calls_per_sample": len(result.levels), "overhead_ratio": sample / (len(result.levels) * call),
              "args": vars(args), "machine": machine_description()}
    (REPO / "benchmarks" / "results" / "sample_time.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
