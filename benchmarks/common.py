"""Helpers shared by the benchmark scripts: locating ../shared and the machine description."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DRDM_SHARED", REPO.parent / "shared"))


def machine_description() -> dict[str, object]:
    """CPU, thread settings and library versions, recorded with every result."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", ""),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def published_model_and_sample():
    """The authors' published 2D cardiac model and the public CMR sample (net_x, 1×1×256×256 in [0, 1])."""
    import numpy as np
    from drdm.models import load_checkpoint

    model = load_checkpoint(SHARED / "reference" / "cmr_recresacnet_2d.pth")
    with np.load(SHARED / "reference" / "vectors_public.npz") as data:
        image = torch.from_numpy(data["net_x"])
    return model, image


def write_results(stem: str, payload: dict, lines: list[str]) -> None:
    """Write ``benchmarks/results/STEM.json`` (``payload`` plus the machine) and ``STEM.md`` (``lines`` plus
    a machine line), and print the Markdown."""
    import json

    machine = machine_description()
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps({**payload, "machine": machine}, indent=1) + "\n", encoding="utf-8")
    (out / f"{stem}.md").write_text("\n".join(lines) + f"\nMachine: {json.dumps(machine)}\n", encoding="utf-8")
    print("\n".join(lines))
