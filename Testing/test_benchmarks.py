"""The benchmark runner itself works (cheap cases, one run each; results written as JSON and Markdown)."""

from __future__ import annotations

import json
import subprocess
import sys

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
