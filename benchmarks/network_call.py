"""Network layouts compared in the same run: one network call and one whole sample per layout.

The baseline is the ``"reference"`` layout (the authors' outputs bit for bit); the candidate is the default
``"channels-last"``. Every measurement runs in a fresh process, the layouts alternate round by round, so a
noisy machine slows both alike; the report gives median and best per layout and the baseline/candidate ratio.

2D (default): the published cmr-2d on the CMR sample, 256², the sample in reference mode at T' = 48, faithful.
3D (``--dims 3``): a reference-size 3D network (width 10, random weights with a zeroed output layer: the cost of
a 3D model, none is public) on a 64³ phantom, the sample in diffeomorphic mode at T' = 64, fast (20 calls).

Usage: OMP_WAIT_POLICY=PASSIVE python benchmarks/network_call.py [--rounds 3] [--calls 8] [--sample-rounds 1]
       [--dims 3 --size 64]
Writes benchmarks/results/network_call.{json,md} (3D: network_call_3d.{json,md}).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from common import published_model_and_sample, write_results

LAYOUTS = ("reference", "channels-last")


def model_and_image(dims: int, size: int):
    """The 2D published model and CMR sample, or a reference-size 3D network (zeroed output) and a phantom."""
    if dims == 2:
        return published_model_and_sample()
    from drdm.models import untrained_model
    from drdm.training.phantoms import cardiac_phantom

    model = untrained_model(3, size=size, seed=0)
    torch.nn.init.zeros_(model.network.conv_out.weight)
    torch.nn.init.zeros_(model.network.conv_out.bias)
    return model, cardiac_phantom(size, 3, seed=0)[0]


def measure(layout: str, calls: int, sample: bool, dims: int, size: int) -> dict:
    """In this process: ``calls`` timed network calls (after one warm-up) and optionally one sample (seconds)."""
    from drdm.sampler import generate

    model, image = model_and_image(dims, size)
    model.network.set_layout(layout)
    t = torch.tensor([40])
    times = []
    with torch.inference_mode():
        model.network(image, t)
        for _ in range(calls):
            start = time.perf_counter()
            model.network(image, t)
            times.append(time.perf_counter() - start)
    result = {"call_s": times}
    if sample:
        start = time.perf_counter()
        if dims == 2:
            generate(model, image, start_level=48, mode="reference", speed="faithful",
                     generator=torch.Generator().manual_seed(0))
        else:
            generate(model, image, start_level=64, mode="diffeomorphic", speed="fast",
                     generator=torch.Generator().manual_seed(0))
        result["sample_s"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of call timing")
    parser.add_argument("--calls", type=int, default=8, help="timed calls per process")
    parser.add_argument("--sample-rounds", type=int, default=1, help="alternating rounds with one whole sample")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dims", type=int, choices=(2, 3), default=2)
    parser.add_argument("--size", type=int, default=64, help="3D only: the volume's side")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: JSON [layout, calls, sample]
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        layout, calls, sample = json.loads(args.one)
        print(json.dumps(measure(layout, calls, sample, args.dims, args.size)))
        return
    load = os.getloadavg()
    runs = {layout: {"call_s": [], "sample_s": []} for layout in LAYOUTS}
    for index in range(max(args.rounds, args.sample_rounds)):
        for layout in LAYOUTS:
            sample = index < args.sample_rounds
            calls = args.calls if index < args.rounds else 1
            out = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--dims", str(args.dims),
                                  "--size", str(args.size), "--one",
                                  json.dumps([layout, calls, sample])], capture_output=True, text=True, check=True)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            if index < args.rounds:
                runs[layout]["call_s"] += got["call_s"]
            if sample:
                runs[layout]["sample_s"].append(got["sample_s"])
            print(layout, index, {k: round(statistics.median(v), 3) for k, v in got.items() if isinstance(v, list)},
                  got.get("sample_s"), flush=True)
    summary = {layout: {f"{k}_{f.__name__}": f(v) for k, v in r.items() if v for f in (statistics.median, min)}
               for layout, r in runs.items()}
    base, cand = summary["reference"], summary["channels-last"]
    case = ("2D 256² (published cmr-2d, CMR sample)" if args.dims == 2
            else f"3D {args.size}³ (reference-size network, width 10, zeroed output layer; phantom)")
    sample_kind = "T'=48, reference, faithful" if args.dims == 2 else "T'=64, diffeomorphic, fast"
    lines = [f"# Network layouts, {case}, {args.threads} threads, same run", "",
             f"Load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}. Fresh process per measurement, "
             f"layouts alternating; {args.rounds} rounds × {args.calls} calls, {args.sample_rounds} sample round(s).", "",
             f"| layout | call s median | call s best | sample s ({sample_kind}) median | best |",
             "|---|---|---|---|---|"]
    for layout in LAYOUTS:
        s = summary[layout]
        lines.append(f"| {layout} | {s['call_s_median']:.3f} | {s['call_s_min']:.3f} | "
                     f"{s.get('sample_s_median', float('nan')):.2f} | {s.get('sample_s_min', float('nan')):.2f} |")
    ratios = {k: base[k] / cand[k] for k in base if k in cand}
    lines += ["", "Speed-up (reference / channels-last): " + ", ".join(f"{k} {v:.2f}×" for k, v in ratios.items()), ""]
    stem = "network_call" if args.dims == 2 else "network_call_3d"
    write_results(stem, {"args": vars(args), "load_average": load, "summary": summary, "ratios": ratios,
                         "runs": runs}, lines)

if __name__ == "__main__":
    main()
