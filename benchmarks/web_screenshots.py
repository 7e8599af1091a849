"""The README's pictures of ``drdm web``: the bundled ``cmr-2d`` on a real cardiac stack, in headless Chromium.

    python benchmarks/web_screenshots.py [--volume V --labels L] [--out Resources/Screenshots] [--seed 3]

Starts ``drdm web`` on the ACDC sample stack of ``shared/data/cmr`` (216 × 256 × 10, 1.56 × 1.56 × 10 mm; not
copied into the repository), opens the printed URL, times the first paint (start → the views show the volume),
generates one deformation with a fixed seed, and saves: the page after the generation
(``DRDMSlicer-web-result.png``), the deformation grid (``DRDMSlicer-web-grid.png``) and what a second browser
sees meanwhile (``DRDMSlicer-web-in-use.png``). Timings go to ``benchmarks/results/web_screenshots.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Testing" / "web"))  # browser (selenium helpers) and raw_client live beside the web tests
DATA = Path(os.environ.get("DRDM_SHARED", REPO.parent / "shared")) / "data" / "cmr"
RESULTS = REPO / "benchmarks" / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", default=str(DATA / "patient001_frame01.nii.gz"))
    parser.add_argument("--labels", default=str(DATA / "patient001_frame01_gt.nii.gz"))
    parser.add_argument("--out", default=str(REPO / "Resources" / "Screenshots"))
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--level", type=int, default=48)
    args = parser.parse_args()
    if not Path(args.volume).is_file():
        print(f"error: {args.volume} not found (set DRDM_SHARED to the shared/ folder, or give --volume)", file=sys.stderr)
        return 2
    from browser import chromium, fix_seed, generate, open_loaded, served, wait_for
    from selenium.webdriver.common.by import By

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="drdm-web-shots-"))
    started = time.monotonic()
    arguments = [args.volume, "--segmentation", args.labels, "--model", "cmr-2d", "--device", "cpu",
                 "--export-dir", str(folder / "exports")]
    with served(arguments, folder / "server.log", 300) as url:
        listening = time.monotonic() - started
        driver = chromium()
        try:
            open_loaded(driver, url)
            first_paint = time.monotonic() - started
            fix_seed(driver, args.seed, args.level)
            time.sleep(0.5)  # the fields reach the server before the click
            t0 = time.perf_counter()
            text = generate(driver, 900)
            generation = time.perf_counter() - t0
            if not text.endswith("done"):
                raise RuntimeError(f"the generation failed: {text}")
            time.sleep(2)
            driver.save_screenshot(str(out / "DRDMSlicer-web-result.png"))
            driver.find_element(By.ID, "drdm-grid-toggle").click()  # the det J overlay is off at first
            time.sleep(3)
            driver.save_screenshot(str(out / "DRDMSlicer-web-grid.png"))
            second = chromium()
            try:
                second.get(url)
                wait_for(lambda: second.find_elements(By.ID, "drdm-in-use"), 30, "the in-use page")
                second.set_window_size(900, 500)
                second.save_screenshot(str(out / "DRDMSlicer-web-in-use.png"))
            finally:
                second.quit()
        finally:
            driver.quit()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "web_screenshots.md").write_text(
        "# drdm web: README screenshots and time to first paint\n\n"
        f"`python benchmarks/web_screenshots.py --seed {args.seed} --level {args.level}` (CPU; headless Chromium on the "
        "same machine)\n\n| figure | value |\n|---|---|\n"
        f"| server listening after start | {listening:.1f} s |\n"
        f"| first paint (start → views show the volume) | {first_paint:.1f} s |\n"
        f"| one generation, click → `done` | {generation:.1f} s |\n\n"
        f"Input: {Path(args.volume).name} + labels (ACDC, 216 × 256 × 10, 1.5625 × 1.5625 × 10 mm), model cmr-2d, "
        f"T'={args.level}, seed {args.seed}, diffeomorphic/fast.\n", encoding="utf-8")
    print(f"listening {listening:.1f} s, first paint {first_paint:.1f} s, generation {generation:.1f} s; "
          f"screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
