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


PHASES = ["gpu_tests", "fidelity", "graph", "throughput", "sampler_3d", "profile", "precision", "training", "zero_start"]
SMOKE_ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "DRDMSlicer"), "OMP_NUM_THREADS": "2",
             "OMP_WAIT_POLICY": "PASSIVE"}


def test_gpu_check_script_runs_its_cases_in_smoke_mode(tmp_path):
    """The measurement script itself, on tiny sizes on the CPU (its numbers mean nothing): every phase runs, in
    order of value, and the Markdown page shows each one's table."""
    completed = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--smoke",
                                "--train-seconds", "3", "--out", str(tmp_path)], capture_output=True, text=True,
                               timeout=600, env=SMOKE_ENV)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    (path,) = tmp_path.glob("gpu_cpu_*.json")
    report = json.loads(path.read_text(encoding="utf-8"))
    assert [p["name"] for p in report["phases"]] == PHASES
    assert all(p["status"] == "done" for p in report["phases"]), report["phases"]
    rows = [row for name in ("graph", "throughput", "sampler_3d", "training") for row in report[name]["rows"]]
    rows += report["precision"]["speed"]
    assert rows and all("error" not in (row.get("result") or {}) for row in rows), rows
    assert report["gpu_tests"]["passed"], report["gpu_tests"]
    graph = next(r for r in report["graph"]["rows"] if r["case"]["graph"] and r["case"]["batch"] == 1)
    assert graph["result"]["max_diff_vox"] == 0.0  # ignored on the CPU: the eager sample itself
    tf32 = next(r for r in report["precision"]["speed"] if r["case"]["precision"] == "tf32")
    assert tf32["result"]["compared_with"] == "exact" and tf32["result"]["max_diff_vox"] == 0.0  # identical on the CPU
    assert all("error" not in row and row["max_diff_vox_per_seed"] == [0.0, 0.0] for row in report["precision"]["statistics"])
    assert report["profile"]["top"] and 0 < report["profile"]["network_share"] <= 1.5
    (chunk, *_) = report["zero_start"]["chunks"]
    assert chunk["recovery_error"]["levels"] == [10, 30, 50, 70]
    page = path.with_suffix(".md").read_text(encoding="utf-8")
    for heading in ("## GPU tests", "## Fidelity", "## 2D 256² samples", "throughput at batch 32", "## 3D 128³ samples",
                    "## Profile of one 3D 128³ recovery step", "## Precision: tf32 against exact", "## Training throughput",
                    "## 3D 64³ training from the zero start"):
        assert heading in page, heading
    assert "| steps | seconds | t = 10 |" in page and "| mean_vox |" in page


def test_gpu_check_keeps_the_finished_phases_of_a_run_cut_off(tmp_path):
    """Killed in the middle of a phase (as the script's time limit would), the results file holds every phase
    finished before, and names the one cut off; nothing after it."""
    code = ("import os, sys; sys.path.insert(0, sys.argv[1]); import gpu_check\n"
            "gpu_check.PHASES[3] = gpu_check.PHASES[3][:3] + (lambda ctx, data: os._exit(137),)\n"
            "gpu_check.main(sys.argv[2:])")
    completed = subprocess.run([sys.executable, "-c", code, str(REPO / "benchmarks"), "--device", "cpu", "--smoke",
                                "--phases", "gpu_tests,fidelity,graph,throughput,sampler_3d", "--out", str(tmp_path)],
                               capture_output=True, text=True, timeout=600, env=SMOKE_ENV)
    assert completed.returncode == 137, completed.stdout[-2000:] + completed.stderr[-2000:]
    (path,) = tmp_path.glob("gpu_cpu_*.json")
    report = json.loads(path.read_text(encoding="utf-8"))
    assert [(p["name"], p["status"]) for p in report["phases"]] == [
        ("gpu_tests", "done"), ("fidelity", "done"), ("graph", "done"), ("throughput", "running")]
    assert len(report["graph"]["rows"]) == 4 and "sampler_3d" not in report
    page = path.with_suffix(".md").read_text(encoding="utf-8")
    assert "## 2D 256² samples: eager against the CUDA-graph step (done" in page
    assert "(running — the run was cut off here)" in page


def test_gpu_check_skips_what_the_budget_cannot_hold(tmp_path):
    """A budget too small for any phase records every phase as skipped and starts none (never overruns)."""
    completed = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--device", "cpu",
                                "--budget-s", "5", "--phases", "fidelity,graph,training", "--out", str(tmp_path)],
                               capture_output=True, text=True, timeout=300, env=SMOKE_ENV)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    (path,) = tmp_path.glob("gpu_cpu_*.json")
    report = json.loads(path.read_text(encoding="utf-8"))
    assert [(p["name"], p["status"]) for p in report["phases"]] == [
        ("fidelity", "skipped (budget)"), ("graph", "skipped (budget)"), ("training", "skipped (budget)")]
    assert report["seconds"] < 5
