"""The browser front end's cost: time to first paint, and one generation through the page vs the logic directly.

Same input, model, level, seed and settings both ways; runs alternate (browser, direct, browser, …) so a noisy
machine biases neither; medians and the ratio go to ``benchmarks/results/web_overhead.{json,md}``.

    python benchmarks/web_overhead.py [--runs 3] [--model cmr-2d] [--size 128] [--slices 4]

The browser time is click → the status line saying ``done`` (what a user waits for: the worker thread, adding
the nodes, rendering and the websocket round trips); the direct time is ``DeformationLogic.generate`` on a
slicer-core scene in this process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "Testing" / "web"))  # browser (selenium helpers) and raw_client live beside the web tests


def make_volume(folder: Path, size: int, slices: int) -> Path:
    """An anisotropic stack of ``slices`` ``size``² slices with a ring and texture (no downloads)."""
    k, j, i = np.meshgrid(np.arange(slices), np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    ring = np.sqrt(i**2 + (1.2 * j) ** 2)
    array = (300 * np.exp(-8 * (ring - 0.45) ** 2) + 60 * np.sin(9 * i) * np.cos(7 * j) + 10 * k + 200).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.25, 1.25, 8.0))
    path = folder / "volume.nii.gz"
    sitk.WriteImage(image, str(path))
    return path


def direct_seconds(volume: Path, model: str, level: int, seed: int, speed: str) -> float:
    """``DeformationLogic.generate`` on a fresh slicer-core scene, timed like the page's status line."""
    import slicer
    from drdm.physical.io import read_image
    from drdm.settings import DeformationSettings
    from DRDMSlicerLib.logic import DeformationLogic
    from DRDMSlicerLib.mrml import volume_from_sitk

    scene = slicer.vtkMRMLScene()
    node = volume_from_sitk(scene, read_image(volume), "volume")
    logic = DeformationLogic(scene)
    started = time.perf_counter()
    logic.generate(node, model=model, settings=DeformationSettings(level=level, seed=seed, speed=speed, device="cpu"))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", default="cmr-2d")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--level", type=int, default=48)
    parser.add_argument("--speed", default="fast")
    args = parser.parse_args()

    from browser import chromium, fix_seed, generate, open_loaded, served

    folder = Path(tempfile.mkdtemp(prefix="drdm-web-bench-"))
    volume = make_volume(folder, args.size, args.slices)
    seed = 7
    browser, direct = [], []
    started = time.monotonic()
    with served([str(volume), "--model", args.model, "--device", "cpu", "--export-dir", str(folder / "exports")],
                folder / "server.log") as url:
        listening = time.monotonic() - started
        driver = chromium()
        try:
            open_loaded(driver, url)
            first_paint = time.monotonic() - started
            fix_seed(driver, seed, args.level)
            for run in range(args.runs):
                t0 = time.perf_counter()
                text = generate(driver)
                browser.append(time.perf_counter() - t0)
                if not text.endswith("done"):
                    raise RuntimeError(f"generation through the page failed: {text}")
                direct.append(direct_seconds(volume, args.model, args.level, seed, args.speed))
                print(f"run {run + 1}: browser {browser[-1]:.2f} s, direct {direct[-1]:.2f} s", file=sys.stderr)
        finally:
            driver.quit()
    result = dict(
        input=f"{args.slices} x {args.size}^2 float32, spacing 1.25 x 1.25 x 8 mm", model=args.model, level=args.level,
        speed=args.speed, mode="diffeomorphic", device="cpu", runs=args.runs,
        server_listening_s=round(listening, 2), first_paint_s=round(first_paint, 2),
        browser_s=[round(t, 3) for t in browser], direct_s=[round(t, 3) for t in direct],
        browser_median_s=round(statistics.median(browser), 3), direct_median_s=round(statistics.median(direct), 3),
        overhead_ratio=round(statistics.median(browser) / statistics.median(direct), 3),
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "web_overhead.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "web_overhead.md").write_text(
        "# drdm web: time to first paint and UI overhead\n\n"
        f"`python benchmarks/web_overhead.py --runs {args.runs} --model {args.model} --size {args.size} "
        f"--slices {args.slices}` (CPU, 2 threads; headless Chromium on the same machine)\n\n"
        "| figure | value |\n|---|---|\n"
        f"| server listening after start | {listening:.1f} s |\n"
        f"| first paint (start → views rendered with the volume) | {first_paint:.1f} s |\n"
        f"| one generation through the browser (click → `done`), median of {args.runs} | {result['browser_median_s']:.2f} s |\n"
        f"| the same through `DeformationLogic.generate` directly, median | {result['direct_median_s']:.2f} s |\n"
        f"| UI overhead ratio | {result['overhead_ratio']:.3f} |\n\n"
        f"Input: {result['input']}; model {args.model}, T'={args.level}, seed {seed}, diffeomorphic/{args.speed}. "
        f"Runs (browser, direct): {list(zip(result['browser_s'], result['direct_s']))}.\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
