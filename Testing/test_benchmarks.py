"""The benchmark runners themselves work (cheap cases, one run each; results written as JSON and Markdown)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import REPO


def test_benchmark_runner_writes_json_and_markdown(tmp_path):
    out = tmp_path / "bench"
    completed = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--only", "monai 2D", "--runs", "1",
                                "--threads", "1", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert report["machine"]["OMP_WAIT_POLICY"] and report["machine"]["torch_threads"] == 1
    (row,) = report["rows"]
    assert abs(row["result"]["mean_percent_fov"] - 10.0) < 0.5  # calibrated to the target displacement
    assert 0.0 <= row["result"]["folding"] <= 1.0
    assert "| monai 2D 256²" in out.with_suffix(".md").read_text(encoding="utf-8")


def test_gpu_check_refuses_a_machine_without_gpu(tmp_path):
    """scripts/gpu_check.sh stops at once with one clear line and exit status 2 where no NVIDIA GPU is."""
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi: the refusal cannot be shown here")
    completed = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh")], capture_output=True, text=True,
                               timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert completed.returncode == 2
    assert completed.stderr.strip().startswith("gpu_check: no NVIDIA GPU") and len(completed.stderr.splitlines()) == 1


def test_gpu_check_script_runs_its_cases_in_smoke_mode(tmp_path):
    """The measurement script itself, on tiny sizes on the CPU (its numbers mean nothing): every section runs."""
    completed = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--smoke",
                                "--train-seconds", "3", "--out", str(tmp_path)], capture_output=True, text=True,
                               timeout=600, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "DRDMSlicer"),
                                                 "OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"})
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    (path,) = tmp_path.glob("gpu_cpu_*.json")
    report = json.loads(path.read_text(encoding="utf-8"))
    rows = report["sampler"] + report["training"]
    assert rows and all("error" not in (row.get("result") or {}) for row in rows), rows
    assert report["zero_start"]["recovery_error"]["levels"] == [10, 30, 50, 70]
    assert "## Sampler" in path.with_suffix(".md").read_text(encoding="utf-8")
