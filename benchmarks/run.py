"""The project's speed and memory benchmark: one command, JSON + Markdown with the machine description.

Measures (several runs each: median, min, max), every case in its own process so that peak memory is its own:

* one network call (two refinement passes) at 2D 256², 3D 64³, 3D 128³, batch 1/4/8, in the default
  ``channels-last`` layout, plus the baseline ``reference`` layout (the authors' bits) at 2D 256² and 3D 64³,
  batch 1;
* a whole sample (:func:`drdm.sampler.generate`) for each sampler mode and rung of the speed ladder
  (faithful, fast, faster), with the overhead ratio sample time / (network calls × one call on the same input,
  timed in the same process) and samples per second (batch ``b``: ``b`` samples, one generator each, as
  ``count > 1`` runs them);
* TorchIO ``RandomElasticDeformation`` and MONAI ``Rand2DElasticd`` / ``Rand3DElasticd`` calibrated to a mean
  displacement of 10 % of the field of view: time per call and folding (det J ≤ 0) of their field;
* peak RSS of each case (CPU) and peak allocated GPU memory (CUDA).

2D uses the authors' published CMR model and sample when ``../shared`` is present. 3D uses a reference-size
network (width 10, the lct-3d layout; its weights are not public) with a zeroed output layer: the same FLOPs,
and no diffeomorphic step back-offs that random weights would trigger.

Usage: ``bash scripts/benchmark.sh`` (default set, < 15 min on a 2-core CPU), ``--full`` for every size × batch ×
mode × speed (hours on a CPU), ``--device cuda`` on a GPU (adds AMP and torch.compile rows for network calls and samples with the
CUDA-graph recovery step).
Writes ``benchmarks/results/benchmark[-DEVICE].{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED, machine_description  # noqa: E402

TARGET_PERCENT_FOV = 10.0


# -- cases -------------------------------------------------------------------------------------------------

def default_cases(full: bool, device: str) -> list[dict]:
    """The case list: the default set fits in 15 minutes on a 2-core CPU; ``full`` is everything."""
    sys.path.insert(0, str(REPO / "DRDMSlicer"))
    from drdm.sampler import LADDER

    cases = []
    sizes = [(2, 256), (3, 64), (3, 128)]
    for dims, size in sizes:
        for batch in (1, 4, 8):
            if full or device == "cuda" or dims == 2 or size <= 64 or batch == 1:
                cases.append({"kind": "call", "dims": dims, "size": size, "batch": batch, "runs": 5 if dims == 2 else 3})
    cases.append({"kind": "call", "dims": 2, "size": 256, "batch": 1, "runs": 5, "layout": "reference"})
    cases.append({"kind": "call", "dims": 3, "size": 64, "batch": 1, "runs": 3, "layout": "reference"})
    if device == "cuda":
        for dims, size in sizes:
            cases.append({"kind": "call", "dims": dims, "size": size, "batch": 1, "runs": 5, "amp": True})
            cases.append({"kind": "call", "dims": dims, "size": size, "batch": 1, "runs": 5, "compile": True})
    for dims, size in sizes:
        for batch in (1, 4, 8):
            for mode in ("reference", "diffeomorphic"):
                for speed in LADDER:
                    if full or device == "cuda" or _in_default_set(dims, size, batch, mode, speed):
                        cases.append({"kind": "sample", "dims": dims, "size": size, "batch": batch, "mode": mode,
                                      "speed": speed, "runs": 3})
    if device == "cuda":
        cases += cuda_graph_cases(sizes)
    for library in ("torchio", "monai"):
        for dims, size in ((2, 256), (3, 128)):
            cases.append({"kind": "peer", "library": library, "dims": dims, "size": size, "runs": 5})
    return cases


def cuda_graph_cases(sizes: list[tuple[int, int]]) -> list[dict]:
    """Samples with the recovery step replayed as a CUDA graph (``generate(cuda_graph=True)``), batch 1."""
    return [{"kind": "sample", "dims": dims, "size": size, "batch": 1, "mode": mode, "speed": speed, "runs": 3,
             "cuda_graph": True}
            for dims, size in sizes for mode, speed in (("reference", "faithful"), ("diffeomorphic", "fast"))]


def _in_default_set(dims: int, size: int, batch: int, mode: str, speed: str) -> bool:
    if speed == "faster":
        return dims == 2 and batch == 1 and mode == "diffeomorphic"
    if dims == 2:
        return batch == 1 or (mode == "diffeomorphic" and speed == "fast")
    return size == 64 and batch == 1 and mode == "diffeomorphic" and speed == "fast"


# -- models and inputs -------------------------------------------------------------------------------------

def _model_and_image(dims: int, size: int, batch: int, device: torch.device):
    from drdm.models import load_checkpoint, untrained_model
    from drdm.training.phantoms import cardiac_phantom

    checkpoint = SHARED / "reference" / "cmr_recresacnet_2d.pth"
    if dims == 2 and size == 256 and checkpoint.is_file():
        import numpy as np

        model = load_checkpoint(checkpoint)
        with np.load(SHARED / "reference" / "vectors_public.npz") as data:
            image = torch.from_numpy(data["net_x"])
        source = "published cmr-2d model, CMR sample"
    else:
        model = untrained_model(dims, size=size)
        torch.nn.init.zeros_(model.network.conv_out.weight)
        torch.nn.init.zeros_(model.network.conv_out.bias)
        image = cardiac_phantom(size, dims, seed=0)[0]
        source = "reference-size network, zeroed output layer, phantom"
    model.to(device)
    return model, image.expand((batch,) + tuple(image.shape[1:])).contiguous().to(device), source


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(function, runs: int, device: torch.device, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        function()
    _synchronise(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        _synchronise(device)
        times.append(time.perf_counter() - start)
    return times


def run_call(case: dict, device: torch.device) -> dict:
    model, image, source = _model_and_image(case["dims"], case["size"], case["batch"], device)
    network = model.network
    if case.get("layout"):
        network.set_layout(case["layout"])
    if case.get("compile"):
        network = torch.compile(network)
    levels = torch.full((case["batch"],), 40, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if case.get("amp") else None

    def call() -> None:
        with torch.inference_mode():
            if autocast is not None:
                with autocast:
                    network(image, levels)
            else:
                network(image, levels)

    return {"seconds": _timed(call, case["runs"], device, warmup=2 if case.get("compile") else 1), "source": source}


def run_sample(case: dict, device: torch.device) -> dict:
    from drdm.sampler import generate

    model, image, source = _model_and_image(case["dims"], case["size"], case["batch"], device)
    seeds = iter(range(1000, 2000))
    result = {}

    def sample() -> None:
        generators = [torch.Generator().manual_seed(next(seeds)) for _ in range(case["batch"])]
        out = generate(model, image, statistics=True, start_level=56 if case["dims"] == 2 else 64, mode=case["mode"],
                       speed=case["speed"],
                       generator=generators, cuda_graph=case.get("cuda_graph", False))
        result["calls"] = len(out.levels) * 1  # one network call (two refinement passes) per level
        result["mean_vox"] = statistics.fmean(out.statistics["mean_vox"])
        result["folding"] = statistics.fmean(out.statistics["folding_fraction"])

    times = _timed(sample, case["runs"], device, warmup=0)
    levels = torch.full((case["batch"],), 40, device=device)

    def call() -> None:
        with torch.inference_mode():
            model.network(image, levels)

    # one network call timed in this same process, right after the samples: the overhead ratio's denominator
    calls = _timed(call, 5, device)
    return {"seconds": times, "source": source, "call_s": statistics.median(calls), **result}


def _peer_field(library: str, dims: int, size: int, magnitude: float, seed: int):
    """Apply the peer transform to an image and to coordinate channels (same random draw): returns the image
    transform as a callable for timing and the pull field in voxels recovered from the warped coordinates."""
    from drdm.training.phantoms import cardiac_phantom

    image = cardiac_phantom(size, dims, seed=0)[0][0]  # (1, *spatial)
    axes = torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * dims, indexing="ij")
    coords = torch.stack(axes)  # (dims, *spatial): channel i = index along axis i
    if library == "torchio":
        import torchio as tio

        expand = (lambda t: t.unsqueeze(-1)) if dims == 2 else (lambda t: t)
        transform = tio.RandomElasticDeformation(num_control_points=7, max_displacement=magnitude, locked_borders=2)

        def apply(with_coords: bool):
            images = {"image": tio.ScalarImage(tensor=expand(image))}
            if with_coords:
                images["coords"] = tio.ScalarImage(tensor=expand(coords))
            torch.manual_seed(seed)
            return transform(tio.Subject(**images))

        def field():
            out = apply(True)["coords"].data
            return (out[..., 0] if dims == 2 else out) - coords
    else:
        from monai.transforms import Rand2DElasticd, Rand3DElasticd

        if dims == 2:
            transform = Rand2DElasticd(keys=["image", "coords"], spacing=(32, 32), magnitude_range=(magnitude, magnitude),
                                       prob=1.0, padding_mode="border", allow_missing_keys=True)
        else:
            transform = Rand3DElasticd(keys=["image", "coords"], sigma_range=(8, 8), magnitude_range=(magnitude, magnitude),
                                       prob=1.0, padding_mode="border", allow_missing_keys=True)

        def apply(with_coords: bool):
            transform.set_random_state(seed)
            data = {"image": image.clone()}
            if with_coords:
                data["coords"] = coords.clone()
            return transform(data)

        def field():
            return torch.as_tensor(apply(True)["coords"]) - coords
    return (lambda: apply(False)), field


def run_peer(case: dict, device: torch.device) -> dict:
    from drdm.field_statistics import displacement_statistics
    from drdm.spatial import folding_fraction

    dims, size, library = case["dims"], case["size"], case["library"]
    target = TARGET_PERCENT_FOV / 100 * size
    magnitude = {"torchio": 0.1 * size, "monai": 5.0}[library]
    for _ in range(3):  # the mean displacement is close to proportional to the magnitude parameter
        _, field = _peer_field(library, dims, size, magnitude, seed=0)
        ddf = field()[None].double()
        mean = displacement_statistics(ddf)["mean_vox"][0]
        magnitude *= target / max(mean, 1e-9)
    apply, field = _peer_field(library, dims, size, magnitude, seed=0)
    ddf = field()[None].double()
    mean = displacement_statistics(ddf)["mean_vox"][0]
    folding = float(folding_fraction(ddf, margin=4)[0])
    version = __import__(library).__version__
    return {"seconds": _timed(apply, case["runs"], device), "magnitude_parameter": magnitude, "mean_vox": mean,
            "mean_percent_fov": 100 * mean / size, "folding": folding, "version": version}


def run_case(case: dict, device_name: str) -> dict:
    """Run one case in this process and return its measurements (peak memory included)."""
    device = torch.device(device_name)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    runner = {"call": run_call, "sample": run_sample, "peer": run_peer}[case["kind"]]
    result = runner(case, device)
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result["rss_before_bytes"] = before
    if device.type == "cuda":
        result["peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
    times = result["seconds"]
    result.update({"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)})
    return result


# -- report ------------------------------------------------------------------------------------------------

def _label(case: dict) -> str:
    shape = f"{case['dims']}D {case['size']}{'²' if case['dims'] == 2 else '³'}"
    if case["kind"] == "peer":
        return f"{case['library']} {shape}"
    extra = " AMP bf16" if case.get("amp") else (" compiled" if case.get("compile") else "")
    extra += f" {case['layout']} layout" if case.get("layout") else ""
    extra += " CUDA graph" if case.get("cuda_graph") else ""
    mode = f" {case['mode']}/{case['speed']}" if case["kind"] == "sample" else ""
    return f"{shape} b{case['batch']}{mode}{extra}"


def _gib(count: float) -> str:
    return f"{count / 2**30:.2f}"


def write_report(rows: list[dict], machine: dict, device: str, seconds: float, out: Path) -> None:
    calls = {(r["case"]["dims"], r["case"]["size"], r["case"]["batch"]): r["result"]["median_s"]
             for r in rows if r["case"]["kind"] == "call" and not r["case"].get("amp") and not r["case"].get("compile")
             and not r["case"].get("layout") and "error" not in r}
    for r in rows:
        c = r["case"]
        if c["kind"] == "sample" and "error" not in r and ("call_s" in r["result"] or (c["dims"], c["size"], c["batch"]) in calls):
            one_call = r["result"].get("call_s") or calls[(c["dims"], c["size"], c["batch"])]
            r["result"]["overhead_ratio"] = r["result"]["median_s"] / (r["result"]["calls"] * one_call)
    report = {"machine": machine, "device": device, "total_seconds": seconds, "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    gpu = device == "cuda"
    memory = "peak GPU GiB" if gpu else "peak RSS GiB (case's own)"
    lines = [f"# DRDM benchmark ({device})", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, {machine['torch_threads']} "
             f"threads, OMP_WAIT_POLICY={machine['OMP_WAIT_POLICY'] or 'unset'}"
             + (f", GPU {machine['gpu']}" if machine.get("gpu") else "") + f". Whole run: {seconds / 60:.1f} min.", "",
             "## Network call (two refinement passes)", "", f"| case | median s (min–max) | runs | {memory} |", "|---|---|---|---|"]

    def mem(result: dict) -> str:
        if gpu:
            return _gib(result.get("peak_gpu_bytes", 0))
        return _gib(result["peak_rss_bytes"] - result["rss_before_bytes"])

    def timing(result: dict) -> str:
        return f"{result['median_s']:.3f} ({result['min_s']:.3f}–{result['max_s']:.3f})"

    for r in rows:
        if r["case"]["kind"] == "call":
            lines.append(f"| {_label(r['case'])} | " + (f"failed: {r['error']}" if "error" in r else
                         f"{timing(r['result'])} | {r['case']['runs']} | {mem(r['result'])}") + " |")
    lines += ["", "## Whole sample (start level 56 in 2D, 64 in 3D)", "",
              f"| case | median s (min–max) | samples/s | network calls | overhead ratio | mean abs u vox | folding % | {memory} |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["case"]["kind"] == "sample":
            if "error" in r:
                lines.append(f"| {_label(r['case'])} | failed: {r['error']} | | | | | | |")
                continue
            res = r["result"]
            ratio = f"{res['overhead_ratio']:.2f}" if "overhead_ratio" in res else "–"
            per_second = r["case"]["batch"] / res["median_s"]
            lines.append(f"| {_label(r['case'])} | {timing(res)} | {per_second:.3f} | {res['calls']} | {ratio} | "
                         f"{res['mean_vox']:.2f} | "
                         f"{100 * res['folding']:.3f} | {mem(res)} |")
    lines += ["", f"## Peers at {TARGET_PERCENT_FOV:.0f} % mean displacement (phantom, CPU)", "",
              "| case | median s (min–max) | parameter | mean abs u (% FOV) | folding % (interior) |", "|---|---|---|---|---|"]
    for r in rows:
        if r["case"]["kind"] == "peer":
            if "error" in r:
                lines.append(f"| {_label(r['case'])} | failed: {r['error']} | | | |")
                continue
            res = r["result"]
            lines.append(f"| {_label(r['case'])} {res['version']} | {timing(res)} | {res['magnitude_parameter']:.3g} | "
                         f"{res['mean_percent_fov']:.1f} | {100 * res['folding']:.2f} |")
    sources = sorted({r["result"]["source"] for r in rows if "source" in r.get("result", {})})
    lines += ["", "Inputs: " + "; ".join(sources) + ".", ""]
    out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--full", action="store_true", help="every size × batch × mode × speed (hours on a CPU)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--only", help="run only cases whose label contains this text (e.g. 'torchio', '2D 256² b1')")
    parser.add_argument("--runs", type=int, help="runs per case (default: 5 for calls and peers, 3 for samples)")
    parser.add_argument("--out", help="result path without suffix (default benchmarks/results/benchmark[-cuda])")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case (JSON) and print its result
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case), args.device)))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("benchmark: --device cuda but no CUDA GPU is available", file=sys.stderr)
        return 2
    cases = default_cases(args.full, args.device)
    if args.only:
        cases = [c for c in cases if args.only in _label(c)]
    if args.runs:
        cases = [{**c, "runs": args.runs} for c in cases]
    default = REPO / "benchmarks" / "results" / ("benchmark-cuda" if args.device == "cuda" else "benchmark")
    out = Path(args.out) if args.out else default
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
           "PYTHONPATH": os.pathsep.join([str(REPO / "DRDMSlicer"), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    rows = []
    for index, case in enumerate(cases, 1):
        print(f"[{index}/{len(cases)}] {_label(case)} ...", end=" ", flush=True)
        completed = subprocess.run([sys.executable, __file__, "--case", json.dumps(case), "--device", args.device,
                                    "--threads", str(args.threads)], env=env, capture_output=True, text=True)
        if completed.returncode != 0:
            error = (completed.stderr.strip().splitlines() or ["unknown error"])[-1]
            rows.append({"case": case, "error": error})
            print(f"failed: {error}")
            continue
        result = json.loads(completed.stdout.strip().splitlines()[-1])
        rows.append({"case": case, "result": result})
        print(f"median {result['median_s']:.3f} s")
    machine = machine_description()
    machine["OMP_WAIT_POLICY"] = env["OMP_WAIT_POLICY"]
    machine["torch_threads"] = args.threads
    write_report(rows, machine, args.device, time.perf_counter() - started, out)
    print(f"wrote {out.with_suffix('.md')} and .json ({(time.perf_counter() - started) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
