"""``drdm web`` in a real browser: the server in a subprocess, headless Chromium driven by selenium.

The tests run in file order on one server and one browser page (a clinician's session: load, generate, look,
export, cancel, a bad file). Set ``DRDM_SCREENSHOTS=<folder>`` to keep the page's screenshots (the README's
pictures come from such a run).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import field_only_model

pytest.importorskip("trame_slicer", reason="the web extra is not installed (pip install -e '.[web]')")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/install_browser.sh, as root)",
                allow_module_level=True)

SERVER_START_S = 180
GENERATION_S = 240
SHOTS = os.environ.get("DRDM_SCREENSHOTS")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def oblique_inputs(folder: Path) -> tuple[Path, Path]:
    """A small oblique, anisotropic 3D volume (6 slices of 40×48) and a two-label map on its grid."""
    k, j, i = np.meshgrid(np.arange(6), np.linspace(-1, 1, 40), np.linspace(-1, 1, 48), indexing="ij")
    ring = np.sqrt(i**2 + (1.3 * j) ** 2)
    array = (200 * np.exp(-6 * (ring - 0.45) ** 2) + 60 * np.sin(7 * i) * np.cos(5 * j) + 5 * k + 100).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.4, 1.1, 6.0))
    image.SetOrigin((-30.0, 12.0, 4.0))
    a = np.deg2rad(20)
    image.SetDirection(tuple(np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]).ravel()))
    labels = sitk.GetImageFromArray(((ring < 0.35).astype(np.uint8) + 2 * ((ring > 0.5) & (ring < 0.6))).astype(np.uint8))
    labels.CopyInformation(image)
    paths = folder / "oblique.nii.gz", folder / "oblique_labels.nii.gz"
    sitk.WriteImage(image, str(paths[0]))
    sitk.WriteImage(labels, str(paths[1]))
    return paths


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``drdm web`` on a free loopback port with the inputs and a small model (2D, 32², field only)."""
    from drdm.model_files import save_model

    folder = tmp_path_factory.mktemp("web")
    volume, labels = oblique_inputs(folder)
    model = field_only_model(2, 32, seed=3)
    model.name = "field-only-test-2d"
    weights, _ = save_model(model, folder / "field-only-2d.safetensors")
    port = free_port()
    exports = folder / "exports"
    log = open(folder / "server.log", "w")  # noqa: SIM115 (closed by the fixture)
    command = [sys.executable, "-m", "drdm", "web", str(volume), "--segmentation", str(labels), "--model", str(weights),
               "--port", str(port), "--export-dir", str(exports), "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        while time.monotonic() - started < SERVER_START_S:
            if process.poll() is not None:
                pytest.fail(f"drdm web exited with {process.returncode}: {(folder / 'server.log').read_text()[-3000:]}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.25)
        else:
            pytest.fail("drdm web did not start listening in time")
        yield dict(url=f"http://127.0.0.1:{port}/", exports=exports, volume=volume, folder=folder,
                   started=started, process=process)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def page(server):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    driver.get(server["url"])
    try:
        wait_for(lambda: len(view_images(driver)) >= 3 and "loaded" in status(driver), 120, "the views and the volume")
        server["first_paint_s"] = time.monotonic() - server["started"]
        yield driver
    finally:
        driver.quit()


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # the element may be re-rendered while we look
            value = None
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def view_images(driver) -> list:
    return [img for img in driver.find_elements(By.TAG_NAME, "img")
            if driver.execute_script("return arguments[0].naturalWidth", img) > 50]


def views_png(driver) -> list[bytes]:
    return [img.screenshot_as_png for img in view_images(driver)]


def status(driver) -> str:
    return driver.find_element(By.ID, "drdm-status").text.strip()


def view_changes(driver, before: list[bytes], what: str) -> None:
    wait_for(lambda: views_png(driver) != before, 30, f"the views to change after {what}")


def finished(driver) -> str | None:
    """The status text once a generation has ended (done, cancelled or an error), else None."""
    text = status(driver)
    return text if text.endswith(("done", "cancelled")) or text.startswith("error") else None


def generate(driver, seconds: float = GENERATION_S) -> str:
    """Click Generate and wait until the status says it started, then until it ended; returns the status."""
    before = status(driver)
    driver.find_element(By.ID, "drdm-generate").click()
    wait_for(lambda: status(driver).startswith("generating") or (status(driver).startswith("error") and status(driver) != before),
             30, "the generation to start")
    return wait_for(lambda: finished(driver), seconds, "the generation to end")


def type_into(element, text: str) -> None:
    """Replace a field's text the way a user does (select all, type), so that the page's model sees it."""
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    if text:
        element.send_keys(text)


def result_items(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#drdm-results .drdm-result")


def shot(driver, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SHOTS) / name))


def test_page_has_the_public_ids(page):
    for element_id in ("drdm-volume-path", "drdm-load", "drdm-segmentation-path", "drdm-model", "drdm-level",
                       "drdm-seed", "drdm-random-seed", "drdm-count", "drdm-mode", "drdm-speed", "drdm-generate",
                       "drdm-cancel", "drdm-progress", "drdm-status", "drdm-results"):
        assert page.find_elements(By.ID, element_id), element_id
    assert page.find_element(By.ID, "drdm-level").get_attribute("max") == "80"
    assert status(page) == "loaded oblique"


def test_generate_adds_a_result_and_changes_the_view(page, server):
    before = views_png(page)
    assert result_items(page) == []
    text = generate(page)
    assert text.endswith("done"), text
    assert len(result_items(page)) == 1
    view_changes(page, before, "generating")
    stats = page.find_element(By.ID, "drdm-stats").text
    for row in ("mean |u|", "p95 |u|", "% FOV", "folded voxels", "det J min", "det J max", "seed", "level", "model sha256",
                "time"):
        assert row in stats, row
    shot(page, "DRDMSlicer-web-result.png")


def test_jacobian_and_grid_toggles_change_the_view(page):
    before = views_png(page)
    page.find_element(By.ID, "drdm-jacobian-toggle").click()
    view_changes(page, before, "hiding the det J overlay")
    without_jacobian = views_png(page)
    page.find_element(By.ID, "drdm-grid-toggle").click()
    view_changes(page, without_jacobian, "showing the deformation grid")
    shot(page, "DRDMSlicer-web-grid.png")
    with_grid = views_png(page)
    page.find_element(By.ID, "drdm-grid-toggle").click()
    page.find_element(By.ID, "drdm-jacobian-toggle").click()
    view_changes(page, with_grid, "restoring the det J overlay")


def test_exports_reproduce_the_deformed_image(page, server):
    page.find_element(By.ID, "drdm-export-all").click()
    wait_for(lambda: status(page).startswith("exported") and status(page).endswith("done"), 60, "export all")
    [folder] = [p for p in server["exports"].iterdir() if p.is_dir()]
    assert {"image.nii.gz", "labels.nii.gz", "transform.h5", "jacobian.nii.gz", "stats.json", "qa.png"} <= {
        p.name for p in folder.iterdir()}
    page.find_element(By.ID, "drdm-export-transform").click()
    wait_for(lambda: list(server["exports"].glob("*_transform.h5")), 60, "export transform")
    original = sitk.ReadImage(str(server["volume"]))  # int16: the deformed image keeps the input's pixel type
    deformed = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "image.nii.gz"))).astype(np.float64)
    original_array = sitk.GetArrayFromImage(original).astype(np.float64)
    value_range = float(np.ptp(original_array))
    assert np.abs(deformed - original_array).max() > 0.05 * value_range  # it did deform
    for transform_file in (folder / "transform.h5", next(server["exports"].glob("*_transform.h5"))):
        transform = sitk.ReadTransform(str(transform_file))
        resampled = sitk.GetArrayFromImage(sitk.Resample(original, original, transform, sitk.sitkLinear, 0.0))
        resampled = resampled.astype(np.float64)
        assert np.abs(resampled - deformed).max() <= 1e-3 * value_range, transform_file.name


def test_cancel_adds_nothing(page):
    count = page.find_element(By.ID, "drdm-count")
    type_into(count, "40")
    before = len(result_items(page))
    page.find_element(By.ID, "drdm-generate").click()
    wait_for(lambda: "step" in status(page), 60, "the first network step")
    page.find_element(By.ID, "drdm-cancel").click()
    text = wait_for(lambda: finished(page), 60, "the cancellation")
    assert text.endswith("cancelled"), text
    assert len(result_items(page)) == before
    type_into(count, "1")


def test_corrupt_file_shows_an_error_and_the_server_keeps_running(page, server):
    corrupt = server["folder"] / "corrupt.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b this is not a NIfTI file" * 10)
    type_into(page.find_element(By.ID, "drdm-volume-path"), str(corrupt))
    type_into(page.find_element(By.ID, "drdm-segmentation-path"), "")
    page.find_element(By.ID, "drdm-load").click()
    text = wait_for(lambda: status(page) if status(page).startswith("error") else None, 30, "the error")
    assert "corrupt.nii.gz" in text
    assert page.find_element(By.ID, "drdm-alert").is_displayed()
    shot(page, "DRDMSlicer-web-error.png")
    # the scene is unchanged and the server still answers: the previous volume generates again
    results = len(result_items(page))
    assert generate(page).endswith("done")
    assert len(result_items(page)) == results + 1


def test_upload_from_the_browser(page, server):
    copy = server["folder"] / "uploaded.nii.gz"
    shutil.copy(server["volume"], copy)
    upload = page.find_element(By.CSS_SELECTOR, "#drdm-volume-upload, input#drdm-volume-upload")
    upload.send_keys(str(copy))
    wait_for(lambda: "loaded uploaded" in status(page), 60, "the uploaded volume")
