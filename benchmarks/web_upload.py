"""A large upload through ``drdm web``'s page: a float32 volume of about ``--mb`` MB, chosen in headless Chromium.

    python benchmarks/web_upload.py [--mb 300]

Times file chosen → the status line saying ``loaded`` (the browser reads the file, wslink sends it in chunks over
the WebSocket, the server writes it to the private upload folder, reads it and shows it). Results go to
``benchmarks/results/web_upload.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "Testing" / "web"))  # browser (selenium helpers) and raw_client live beside the web tests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=300)
    args = parser.parse_args()
    from browser import chromium, served, status, view_images, wait_for
    from selenium.webdriver.common.by import By

    folder = Path(tempfile.mkdtemp(prefix="drdm-web-upload-"))
    slices = max(1, round(args.mb * 1024 * 1024 / (512 * 512 * 4)))
    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(size=(slices, 512, 512)).astype(np.float32))
    image.SetSpacing((0.7, 0.7, 1.0))
    volume = folder / "big.nii"
    sitk.WriteImage(image, str(volume), useCompression=False)
    size_mb = volume.stat().st_size / 1024**2
    small = folder / "data" / "small.nii.gz"
    small.parent.mkdir()
    sitk.WriteImage(sitk.Image(32, 32, 4, sitk.sitkInt16), str(small))
    with served([str(small), "--device", "cpu"], folder / "server.log") as url:
        driver = chromium()
        try:
            driver.get(url)
            wait_for(lambda: len(view_images(driver)) >= 3 and status(driver).startswith("loaded"), 180, "first paint")
            started = time.monotonic()
            driver.find_element(By.CSS_SELECTOR, "#drdm-volume-upload, input#drdm-volume-upload").send_keys(str(volume))
            text = wait_for(lambda: status(driver) if "big" in status(driver) or status(driver).startswith("error")
                            else None, 600, "the upload")
            seconds = time.monotonic() - started
        finally:
            driver.quit()
    if not text.startswith("loaded"):
        print(f"error: the upload failed: {text}", file=sys.stderr)
        return 1
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "web_upload.md").write_text(
        "# drdm web: a large upload from the browser\n\n"
        f"`python benchmarks/web_upload.py --mb {args.mb}` (CPU; headless Chromium on the same machine)\n\n"
        f"A {size_mb:.0f} MB NIfTI ({slices} × 512 × 512 float32) chosen in the page → `{text}`: {seconds:.1f} s "
        "(read by the browser, sent in wslink chunks over the WebSocket, written to the private upload folder, "
        "read and shown).\n", encoding="utf-8")
    print(f"{size_mb:.0f} MB uploaded and loaded in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
