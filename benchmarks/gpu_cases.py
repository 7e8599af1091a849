"""The measurements of ``benchmarks/gpu_check.py``, one function per kind: a sampler case (time, peak memory, the
CUDA-graph sample against the eager one), a network call, sample statistics over seeds, the profile of one
recovery step, training throughput and a chunk of training. Every function runs on CUDA or (``--smoke``) the CPU.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from drdm.model_store.loading import load_model_spec
from drdm.models import DRDMModel, untrained_model
from drdm.network import convolution_precision
from drdm.sampler import _recovery_step, generate
from drdm.training.phantoms import cardiac_phantom, cardiac_short_axis_phantom

TOP_KERNELS = 15  # kernels listed by the profile of one recovery step


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def sampler_model(ndims: int, size: int, device: torch.device) -> tuple[DRDMModel, torch.Tensor]:
    """The bundled cmr-2d at 2D 256²; otherwise the reference architecture (width 10) with random weights and a
    zeroed output layer (the lct-3d cost; the published lct-3d is not reachable from the lent machines)."""
    if ndims == 2 and size == 256:
        model, image = load_model_spec("cmr-2d"), cardiac_short_axis_phantom(256, seed=0)[0]
    else:
        preset_size = 256 if ndims == 2 else 128
        small = {"control_size": 8, "velocity_scale": 4e-5 * preset_size / size} if size < 64 else {}  # --smoke sizes
        model = untrained_model(ndims, size=size, noise_overrides=small)
        torch.nn.init.zeros_(model.network.conv_out.weight)
        torch.nn.init.zeros_(model.network.conv_out.bias)
        image = cardiac_phantom(size, ndims, seed=0)[0]
    return model.to(device), image.to(device)


def sampler_case(case: dict, device: torch.device) -> dict:
    """Seconds per sample (median of ``runs`` after one warm-up) and peak memory of one sampler case
    (``dims size batch mode speed graph precision``); with ``compare`` also the largest difference (voxels) of the
    sample of seed 1 to the sample of the same seed with the graph off (``graph``) or in exact precision (``tf32``)."""
    model, image = sampler_model(case["dims"], case["size"], device)
    batch = image.expand((case["batch"],) + tuple(image.shape[1:])).contiguous()
    level = 56 if case["dims"] == 2 else 64

    def sample(seed: int, graph: bool, precision: str) -> torch.Tensor:
        with torch.inference_mode():
            return generate(model, batch, statistics=True, start_level=level, mode=case["mode"], speed=case["speed"],
                            cuda_graph=graph,
                            precision=precision, generator=torch.Generator().manual_seed(seed)).ddf

    started = time.perf_counter()
    sample(0, case["graph"], case["precision"])
    synchronise(device)
    warmup = time.perf_counter() - started
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for run in range(case["runs"]):
        started = time.perf_counter()
        sample(run + 1, case["graph"], case["precision"])
        synchronise(device)
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    per_batch = statistics.median(times)
    result = {"s_per_sample": per_batch / case["batch"], "s_per_batch": per_batch,
              "samples_per_s": case["batch"] / per_batch, "warmup_s": round(warmup, 2),
              "peak_gib": None if peak is None else round(peak / 2**30, 3)}
    if case.get("compare"):  # tf32: against exact with the same graph choice; exact: against the eager step
        graph, name = (case["graph"], "exact") if case["precision"] == "tf32" else (False, "eager")
        difference = (sample(1, case["graph"], case["precision"]) - sample(1, graph, "exact")).abs()
        result["compared_with"] = name
        result["max_diff_vox"] = float(difference.max())
        result["mean_diff_vox"] = float(difference.mean())
    return result


def seed_statistics(model: DRDMModel, image: torch.Tensor, seeds: int, mode: str, speed: str, precision: str) -> dict:
    """Field statistics of ``seeds`` samples (one batch, one generator each): per statistic the mean over seeds,
    and the fields themselves for a sample-by-sample comparison."""
    batch = image.expand((seeds,) + tuple(image.shape[1:])).contiguous()
    level = 56 if model.ndims == 2 else 64
    with torch.inference_mode():
        result = generate(model, batch, statistics=True, start_level=level, mode=mode, speed=speed, precision=precision,
                          generator=[torch.Generator().manual_seed(seed) for seed in range(seeds)])
    means = {key: statistics.fmean(values) for key, values in result.statistics.items()}
    return {"means": means, "ddf": result.ddf}


def median_call_ms(call: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median milliseconds of ``call()`` over ``repeats`` timed calls after three warm-up calls."""
    for _ in range(3):
        call()
    synchronise(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        synchronise(device)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def fidelity_rows(device: torch.device, vectors: Path) -> list[dict]:
    """The bundled cmr-2d's outputs against the public reference vectors per layout and precision (size units)."""
    import numpy as np

    network = load_model_spec("cmr-2d").to(device).network
    with np.load(vectors) as data:
        x, ts, expected = (torch.from_numpy(np.ascontiguousarray(data[k])) for k in ("net_x", "net_t", "net_out_rec2"))
    rows = []
    for layout in ("reference", "channels-last"):
        network.set_layout(layout)
        for precision in ("exact", "tf32"):
            with torch.inference_mode(), convolution_precision(precision):
                out = torch.cat([network(x.to(device), int(t)) for t in ts]).cpu()
            rows.append({"layout": layout, "precision": precision,
                         "max_abs_diff": float((out.double() - expected.double()).abs().max())})
    network.set_layout("channels-last")
    return rows


def call_rows(device: torch.device) -> list[dict]:
    """One 2D 256² cmr-2d call per layout and batch (1, 8), eager and replayed as a CUDA graph (CUDA only)."""
    from drdm.kernels.graph_capture import CapturedFunction

    network = load_model_spec("cmr-2d").to(device).network
    image = cardiac_short_axis_phantom(256, seed=0)[0].to(device)
    rows = []
    for batch in (1, 8):
        x = image.expand(batch, -1, -1, -1).contiguous()
        t = torch.full((batch,), 40, dtype=torch.long, device=device)
        for layout in ("reference", "channels-last"):
            network.set_layout(layout)
            with torch.inference_mode(), convolution_precision("exact"):
                eager_ms = median_call_ms(lambda x=x, t=t: network(x, t), 30, device)
                captured = CapturedFunction(lambda a, b: (network(a, b),), (x, t))
                graph_ms = median_call_ms(lambda c=captured, x=x, t=t: c(x, t), 30, device)
                same = bool(torch.equal(captured(x, t)[0], network(x, t)))
            rows.append({"batch": batch, "layout": layout, "eager_ms": round(eager_ms, 3), "graph_ms": round(graph_ms, 3),
                         "graph_equals_eager": same})
    return rows


def profile_recovery_step(ndims: int, size: int, device: torch.device, mode: str = "reference") -> dict:
    """Where one recovery step's time goes (3D 128³ reference architecture, random weights): the step's and the
    network call's median time, and the kernels with the most self time (CUDA time on a GPU, CPU time else)."""
    from torch.profiler import ProfilerActivity, profile

    model, image = sampler_model(ndims, size, device)
    process = model.forward_process()
    padding = process.composition_padding if mode == "reference" else "border"
    step = _recovery_step(model.network, image, 2, process.image_interpolation, padding, mode == "diffeomorphic")
    ddf = torch.zeros((1, ndims) + tuple(image.shape[2:]), device=device)
    t = torch.full((1,), 40, dtype=torch.long, device=device)
    with torch.inference_mode(), convolution_precision("exact"):
        step_ms = median_call_ms(lambda: step(ddf, image, t), 5, device)
        network_ms = median_call_ms(lambda: model.network(image, t, rec_num=2), 5, device)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            step(ddf, image, t)
            synchronise(device)
    field = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, field, 0) > 0]
    if device.type == "cuda" and not events:  # older PyTorch names the field after CUDA
        field = "self_cuda_time_total"
        events = [e for e in prof.key_averages() if getattr(e, field, 0) > 0]
    events.sort(key=lambda e: getattr(e, field), reverse=True)
    total = sum(getattr(e, field) for e in events) or 1.0
    top = [{"name": e.key[:120], "calls": int(e.count), "ms": round(getattr(e, field) / 1000, 3),
            "percent": round(100 * getattr(e, field) / total, 1)} for e in events[:TOP_KERNELS]]
    return {"ndims": ndims, "size": size, "mode": mode, "step_ms": round(step_ms, 2), "network_ms": round(network_ms, 2),
            "network_share": round(network_ms / step_ms, 3), "timed": field, "profiled_ms": round(total / 1000, 2),
            "top": top}


def training_case(case: dict, device: torch.device, scratch: Path) -> dict:
    """Training samples/s over ``steps`` steps after two warm-up steps (forward process, loss and Adam step)."""
    from drdm.training.config import TrainingConfig
    from drdm.training.loop import train

    common = dict(ndims=case["dims"], size=case["size"], batch=case["batch"], width=10, device=device.type,
                  amp="bf16" if case["precision"] == "bf16" else "none", val_every=10**9, val_samples=1,
                  checkpoint_every=10**9, log_every=10**9, phantoms=8)
    out = scratch / f"train-{case['dims']}d-{case['precision']}"
    train(TrainingConfig(out=str(out), steps=2, **common))
    synchronise(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    train(TrainingConfig(out=str(out), steps=2 + case["steps"], **common), resume=True)
    synchronise(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"samples_per_s": round(case["steps"] * case["batch"] / seconds, 2), "seconds": round(seconds, 1),
            "peak_gib": None if peak is None else round(peak / 2**30, 3)}


def training_chunk(out: Path, size: int, batch: int, steps: int, resume: bool, device: torch.device) -> dict:
    """Train (or resume) a 3D zero-start run up to ``steps`` steps; the recovery-error table at that point."""
    import json

    from drdm.training.config import TrainingConfig
    from drdm.training.loop import train

    config = TrainingConfig(out=str(out), ndims=3, size=size, batch=batch, width=10, steps=steps, lr=3e-4,
                            device=device.type, amp="bf16" if device.type == "cuda" else "none", val_every=10**9,
                            val_samples=4, checkpoint_every=10**9, log_every=max(1, steps // 20))
    result = train(config, resume=resume)
    metadata = json.loads(result.metadata.read_text(encoding="utf-8"))
    return {"steps": steps, "last_loss": result.last_loss, "recovery_error": metadata.get("recovery_error")}
