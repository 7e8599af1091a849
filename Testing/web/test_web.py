"""``drdm web`` in a real browser: the server in a subprocess, headless Chromium driven by selenium.

The tests run in file order on one server and one browser page (a clinician's session: load, generate, look,
export, cancel, a bad file). Set ``DRDM_SCREENSHOTS=<folder>`` to keep the page's screenshots (``test-web-*.png``;
the README's pictures come from ``benchmarks/web_screenshots.py``, the bundled model on a real cardiac stack).
"""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import field_only_model

pytest.importorskip("trame_slicer", reason="the web extra is not installed (pip install -e '.[web]')")
pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
from browser import (  # noqa: E402
    CHROMEDRIVER,
    CHROMIUM,
    chromium,
    finished,
    generate,
    served,
    status,
    type_into,
    view_images,
    views_png,
    wait_for,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/install_browser.sh, as root)",
                allow_module_level=True)

SERVER_START_S = 180
GENERATION_S = 240
SHOTS = os.environ.get("DRDM_SCREENSHOTS")


def oblique_inputs(folder: Path) -> tuple[Path, Path]:
    """A small oblique, anisotropic stack (4 cardiac short-axis-like slices of 96², int16, 1.4 × 1.4 × 8 mm,
    rotated 20° about z) and its label map (3 labels)."""
    from drdm.training.phantoms import cardiac_short_axis_phantom

    slices = [cardiac_short_axis_phantom(96, seed=seed) for seed in range(4)]
    array = (1000 * np.concatenate([image[0, 0].numpy()[None] for image, _ in slices])).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.4, 1.4, 8.0))
    image.SetOrigin((-30.0, 12.0, 4.0))
    a = np.deg2rad(20)
    image.SetDirection(tuple(np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]).ravel()))
    labels = sitk.GetImageFromArray(np.concatenate([lab[0, 0].numpy()[None] for _, lab in slices]).astype(np.uint8))
    labels.CopyInformation(image)
    paths = folder / "oblique.nii.gz", folder / "oblique_labels.nii.gz"
    sitk.WriteImage(image, str(paths[0]))
    sitk.WriteImage(labels, str(paths[1]))
    return paths


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``drdm web`` on a free loopback port with the inputs and a small model (2D, 32², field only)."""
    from drdm.model_store.files import save_model

    folder = tmp_path_factory.mktemp("web")
    volume, labels = oblique_inputs(folder)
    model = field_only_model(2, 32, seed=3)
    model.name = "field-only-test-2d"
    weights, _ = save_model(model, folder / "field-only-2d.safetensors")
    exports = folder / "exports"
    arguments = [str(volume), "--segmentation", str(labels), "--model", str(weights), "--export-dir", str(exports),
                 "--device", "cpu"]
    started = time.monotonic()
    with served(arguments, folder / "server.log", SERVER_START_S) as url:
        yield dict(url=url, exports=exports, volume=volume, folder=folder, started=started)


@pytest.fixture(scope="module")
def page(server):
    driver = chromium()
    driver.get(server["url"])
    try:
        wait_for(lambda: len(view_images(driver)) >= 3 and "loaded" in status(driver), 120, "the views and the volume")
        server["first_paint_s"] = time.monotonic() - server["started"]
        yield driver
    finally:
        driver.quit()


def view_changes(driver, before: list[bytes], what: str) -> None:
    wait_for(lambda: views_png(driver) != before, 30, f"the views to change after {what}")


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


def test_slices_choice_shows_for_a_2d_model_on_the_stack_only(page):
    """drdm-slices: shown for the 2D test model on the 4-slice stack (coherent by default), hidden for a 3D model;
    auto on this stack (thick slices) chooses cmr-2d and says why."""
    slices = page.find_element(By.ID, "drdm-slices")
    assert slices.is_displayed() and page.execute_script("return window.trame.state.get('drdm_slices')") == "coherent"
    chosen = page.execute_script("return window.trame.state.get('drdm_model')")
    try:
        page.execute_script("window.trame.state.set('drdm_model', 'random-field-3d')")
        wait_for(lambda: not page.find_element(By.ID, "drdm-slices").is_displayed(), 30, "the slices choice to hide")
        page.execute_script("window.trame.state.set('drdm_model', 'auto')")
        wait_for(lambda: page.find_element(By.ID, "drdm-slices").is_displayed(), 30, "the slices choice to show")
        note = page.find_element(By.ID, "drdm-model-note").text
        assert note.startswith("model: cmr-2d (auto: stack of thick slices"), note
    finally:
        page.execute_script("window.trame.state.set('drdm_model', arguments[0])", chosen)
        wait_for(lambda: page.execute_script("return window.trame.state.get('drdm_level')") == 48, 30, "the model back")
    assert page.find_element(By.ID, "drdm-slices").is_displayed()


def content_box(png: bytes) -> tuple[int, int]:
    """Width and height (pixels) of what a view shows: the bounding box of its non-dark pixels."""
    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    rows, cols = np.nonzero(grey[:, :] > 40)
    return int(np.ptp(cols)) + 1, int(np.ptp(rows)) + 1


def test_thick_slice_stack_shows_its_acquisition_plane_large(page):
    """The 1.4 × 1.4 × 8 mm stack: the acquisition plane is the large view and shows a full slice (96 × 96 voxels,
    square), not the strip of 4 slices × 8 mm that the other planes cut (the middle slice: test_slicer_logic)."""
    shown = wait_for(lambda: view_images(page) if len(view_images(page)) == 4 else None, 60, "all four views drawn")
    images = sorted(shown, key=lambda img: img.size["width"] * img.size["height"], reverse=True)
    areas = [img.size["width"] * img.size["height"] for img in images]
    assert all(areas[0] >= 3 * area for area in areas[1:]), areas
    width, height = content_box(images[0].screenshot_as_png)
    assert 0.7 < width / height < 1.4 and width > images[0].size["width"] / 3, (width, height)


def test_generate_adds_a_result_and_changes_the_view(page, server):
    before = views_png(page)
    assert result_items(page) == []
    text = generate(page)
    assert text.endswith("done"), text
    assert len(result_items(page)) == 1
    view_changes(page, before, "generating")
    stats = page.find_element(By.ID, "drdm-stats").text
    assert "slices coherent" in stats and "through-plane / in-plane roughness" in stats  # a 2D model on the stack
    for row in ("mean |u|", "p95 |u|", "% FOV", "folded voxels", "det J min", "det J max", "seed", "level", "model sha256",
                "time", " volume", " mL ("):  # the last two: per-segment volume change (drdm.physical.segment_volumes)
        assert row in stats, row
    shot(page, "test-web-result.png")


def test_jacobian_and_grid_toggles_change_the_view(page):
    """After Generate the views show the deformed anatomy alone (the det J overlay is one click away)."""
    jacobian = page.find_element(By.ID, "drdm-jacobian-toggle")
    assert not jacobian.is_selected()
    before = views_png(page)
    jacobian.click()
    view_changes(page, before, "showing the det J overlay")
    with_jacobian = views_png(page)
    page.find_element(By.ID, "drdm-grid-toggle").click()
    view_changes(page, with_jacobian, "showing the deformation grid")
    shot(page, "test-web-grid.png")
    with_grid = views_png(page)
    page.find_element(By.ID, "drdm-grid-toggle").click()
    page.find_element(By.ID, "drdm-jacobian-toggle").click()
    view_changes(page, with_grid, "hiding the det J overlay and the grid")


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
    shot(page, "test-web-error.png")
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


def threshold_thumb(driver):
    """The thumb of the det J threshold slider (keyboard: Home = 0)."""
    return driver.execute_script("return document.getElementById('drdm-jacobian-threshold')"
                                 ".closest('.v-input').querySelector('[role=slider]')")


def test_det_j_overlay_is_transparent_where_the_volume_is_kept(page):
    """At level 0 det J is 1 (± 0.01) everywhere: with the overlay on, the views show exactly what they show with
    it off (pixel check); a threshold of 0 colours det J = 1 too, and the views change."""
    type_into(page.find_element(By.ID, "drdm-level"), "0")
    wait_for(lambda: page.execute_script("return window.trame.state.get('drdm_level')") == 0, 10, "the level 0")
    wait_for(lambda: not page.execute_script("return window.trame.state.get('trame__busy')"), 30, "an idle page")
    time.sleep(0.5)  # the level reaches the server before the click (a loaded machine sent '' first, then 0)
    assert generate(page).endswith("done")
    jacobian = page.find_element(By.ID, "drdm-jacobian-toggle")
    assert not jacobian.is_selected()
    time.sleep(2)
    without_overlay = views_png(page)
    jacobian.click()
    time.sleep(3)  # any change would have arrived
    with_overlay = views_png(page)
    assert with_overlay == without_overlay
    threshold_thumb(page).send_keys(Keys.HOME)  # threshold 0
    view_changes(page, with_overlay, "colouring det J = 1 (threshold 0)")
    shot(page, "test-web-threshold-0.png")
    threshold_thumb(page).send_keys(Keys.PAGE_UP)
    jacobian.click()  # back to the first view: the anatomy alone
    type_into(page.find_element(By.ID, "drdm-level"), "48")


def test_a_size_and_a_kept_segment_through_the_page(page, server):
    """Size (mm) and Keep still reach the engine: the statistics show the size reached and no motion in the kept
    segment; a segment id the page does not list is refused in one line."""
    assert page.find_element(By.ID, "drdm-magnitude").is_displayed()
    upload = page.find_element(By.CSS_SELECTOR, "#drdm-segmentation-upload, input#drdm-segmentation-upload")
    upload.send_keys(str(server["folder"] / "oblique_labels.nii.gz"))  # the uploaded volume's label map
    wait_for(lambda: "3 segments" in page.execute_script("return window.trame.state.get('drdm_loaded')"), 60,
             "the label map")
    segments = page.execute_script("return JSON.parse(JSON.stringify(window.trame.state.get('drdm_segment_items')))")
    assert len(segments) == 3 and page.find_element(By.ID, "drdm-keep").is_displayed()
    type_into(page.find_element(By.ID, "drdm-magnitude"), "0.5")
    wait_for(lambda: page.execute_script("return window.trame.state.get('drdm_magnitude')") == 0.5, 10, "the size")
    page.execute_script(f"window.trame.state.set('drdm_keep', ['{segments[0]['value']}'])")
    wait_for(lambda: not page.execute_script("return window.trame.state.get('trame__busy')"), 30, "an idle page")
    time.sleep(0.5)
    assert generate(page).endswith("done"), status(page)
    stats = page.find_element(By.ID, "drdm-stats").text
    assert "size asked 0.50 mm" in stats and "size reached" in stats and "kept still (labels)" in stats, stats
    kept = float(stats.split("largest |u| in kept")[1].split("mm")[0])
    reached = float(stats.split("size reached")[1].split("mm")[0])
    assert kept <= 0.1 and abs(reached - 0.5) <= 0.05, stats
    page.execute_script("window.trame.state.set('drdm_keep', ['not-a-segment'])")
    time.sleep(0.5)
    assert "kept / deformed-only segments from the list" in generate(page)
    page.execute_script("window.trame.state.set('drdm_keep', [])")
    type_into(page.find_element(By.ID, "drdm-magnitude"), "")
