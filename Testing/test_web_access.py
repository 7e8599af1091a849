"""``drdm web`` as a hospital runs it, in headless Chromium: the access secret, confined files, upload limit, one
browser at a time.

One server (``--secret-file``, ``--data-dir``, ``--max-upload-mb 1``) on a data folder beside an ``outside`` folder
that the page must never open; the tests run in file order on one page (the first browser), a second browser
comes last.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import field_only_model

pytest.importorskip("trame_slicer", reason="the web extra is not installed (pip install -e '.[web]')")
pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
from selenium.webdriver.common.by import By  # noqa: E402

from drdm_web.browser import (  # noqa: E402
    CHROMEDRIVER,
    CHROMIUM,
    chromium,
    served,
    status,
    type_into,
    view_images,
    wait_for,
)

if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/install_browser.sh, as root)",
                allow_module_level=True)

SECRET = "hospital-secret-0123456789abcdef"


def write_stack(path: Path, value: float, slices: int = 4) -> Path:
    """A small thick-slice stack (slices × 48², 1.5 × 1.5 × 8 mm) with a bright disc."""
    y, x = np.mgrid[-24:24, -24:24]
    array = np.stack([(value * (x**2 + y**2 < (12 + k) ** 2)).astype(np.int16) for k in range(slices)])
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.5, 8.0))
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from drdm.model_store.files import save_model

    root = tmp_path_factory.mktemp("hospital")
    data, outside = root / "data", root / "outside"
    data.mkdir()
    outside.mkdir()
    write_stack(data / "stack.nii.gz", 800)
    write_stack(data / "private.nii.gz", 400, slices=3)
    write_stack(outside / "other_patient.nii.gz", 300)
    volume3d = sitk.GetImageFromArray((np.random.default_rng(0).random((40, 40, 40)) * 500).astype(np.int16))
    sitk.WriteImage(volume3d, str(data / "volume3d.nii.gz"))  # 1 mm isotropic: no acquisition plane
    (data / "link.nii.gz").symlink_to(outside / "other_patient.nii.gz")
    (data / "linked_dir").symlink_to(outside)
    (root / "big.nii.gz").write_bytes(os.urandom(2 * 1024 * 1024))  # 2 MB: over --max-upload-mb 1
    secret_file = root / "secret.txt"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    model = field_only_model(2, 32, seed=3)
    model.name = "field-only-test-2d"
    weights, _ = save_model(model, root / "field-only-2d.safetensors")
    arguments = [str(data / "stack.nii.gz"), "--model", str(weights), "--secret-file", str(secret_file),
                 "--max-upload-mb", "1", "--export-dir", str(root / "exports"), "--device", "cpu"]
    log = root / "server.log"
    with served(arguments, log, 180) as url:
        yield dict(url=url, root=root, data=data, outside=outside, log=log)


@pytest.fixture(scope="module")
def page(server):
    driver = chromium()
    driver.get(server["url"])
    try:
        wait_for(lambda: len(view_images(driver)) >= 3 and "loaded" in status(driver), 120, "the views and the volume")
        yield driver
    finally:
        with contextlib.suppress(Exception):
            driver.quit()


def loaded(driver) -> str:
    return driver.find_element(By.ID, "drdm-load").find_element(By.XPATH, "..").text


def load(driver, typed: str, expected: str) -> str:
    """Type a volume path, click Load; returns the status once it shows ``expected`` (fails after 30 s)."""
    field = driver.find_element(By.ID, "drdm-volume-path")
    type_into(field, typed)
    wait_for(lambda: field.get_attribute("value") == typed, 10, "the typed path")
    # trame's client sends state changes once it is not busy; a click is sent at once: let the path go first
    wait_for(lambda: not driver.execute_script("return window.trame.state.get('trame__busy')"), 10, "an idle page")
    time.sleep(0.3)
    driver.find_element(By.ID, "drdm-load").click()
    return wait_for(lambda: status(driver) if expected in status(driver) else None, 30, f"{expected!r} after loading {typed}")


def wslink_hello(url: str, secret: str) -> dict:
    """Open the app's WebSocket as a client would and say ``wslink.hello`` with ``secret``; returns the reply."""
    import aiohttp
    import msgpack
    from wslink.chunking import UnChunker, generate_chunks

    ws_url = url.split("?")[0].replace("http://", "ws://").rstrip("/") + "/ws"

    async def exchange() -> dict:
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
            message = msgpack.packb({"wslink": "1.0", "id": "system:c0:0", "method": "wslink.hello",
                                     "args": [{"secret": secret}], "kwargs": {}})
            for chunk in generate_chunks(message, 4_000_000):
                await ws.send_bytes(chunk)
            unchunker = UnChunker()
            while True:
                reply = unchunker.process_chunk((await ws.receive(timeout=20)).data)
                if reply is not None:
                    return reply  # the unchunker decodes the msgpack message

    return asyncio.run(exchange())


def test_printed_url_carries_the_secret_and_opens_the_app(page, server):
    assert f"?secret={quote(SECRET)}" in server["url"]
    assert status(page) == "loaded stack"
    assert page.find_elements(By.ID, "drdm-generate")
    assert "secret" not in page.current_url  # the page removed it from the address bar


@pytest.mark.parametrize("suffix", ["", "?secret=wslink-secret", "?secret=wrong-secret-0123456789"])
def test_url_without_the_secret_gets_no_app(page, server, suffix):
    driver = chromium()
    try:
        driver.get(server["url"].split("?")[0] + suffix)
        wait_for(lambda: driver.find_elements(By.ID, "drdm-no-access"), 30, "the access page")
        time.sleep(1)
        assert not driver.find_elements(By.ID, "drdm-generate") and not view_images(driver)
        assert "stack" not in driver.page_source
    finally:
        driver.quit()


def test_websocket_refuses_a_client_without_the_secret(page, server):
    for wrong in ("wslink-secret", "", SECRET[:-1] + "x"):
        reply = wslink_hello(server["url"], wrong)
        assert "error" in reply and "result" not in reply, reply
    # the right secret, but the page above holds the session: refused too (no state, no images)
    assert "error" in wslink_hello(server["url"], SECRET)


@pytest.mark.parametrize("typed, reason", [
    ("{outside}/other_patient.nii.gz", "outside the data folder"),
    ("../outside/other_patient.nii.gz", "'..' is not allowed"),
    ("link.nii.gz", "symbolic link that leads outside"),
    ("linked_dir/other_patient.nii.gz", "symbolic link that leads outside"),
])
def test_paths_outside_the_data_folder_are_refused(page, server, typed, reason):
    before = loaded(page)
    text = load(page, typed.format(outside=server["outside"]), reason)
    assert text.startswith("error: ") and reason in text, text
    assert loaded(page) == before  # nothing was loaded
    assert "other_patient" not in loaded(page)


def test_server_keeps_working_after_refusals(page):
    assert load(page, "stack.nii.gz", "loaded") == "loaded stack"


def view_sizes(driver) -> list[int]:
    return sorted((img.size["width"] * img.size["height"] for img in view_images(driver)), reverse=True)


def test_layout_follows_the_volume(page):
    """A 3D volume: the four views share the page; the thick-slice stack again: its acquisition plane is large."""
    assert load(page, "volume3d.nii.gz", "loaded volume3d") == "loaded volume3d"
    def views(condition):  # the view sizes once at least three views are drawn and ``condition(sizes)`` holds
        sizes = view_sizes(page)
        return sizes if len(sizes) >= 3 and condition(sizes) else None

    wait_for(lambda: views(lambda sizes: sizes[0] < 1.5 * sizes[-1]), 30, "the quad view")
    assert load(page, "stack.nii.gz", "loaded stack") == "loaded stack"
    wait_for(lambda: views(lambda sizes: sizes[0] > 3 * sizes[1]), 30, "the acquisition plane large")


def test_upload_over_the_limit_is_refused(page, server):
    before = loaded(page)
    page.find_element(By.CSS_SELECTOR, "#drdm-volume-upload, input#drdm-volume-upload").send_keys(
        str(server["root"] / "big.nii.gz"))
    text = wait_for(lambda: status(page) if status(page).startswith("error") else None, 30, "the upload error")
    assert "big.nii.gz: 2.0 MB is over the upload limit of 1 MB (--max-upload-mb)" in text
    assert loaded(page) == before


def test_upload_folder_is_owner_only(server):
    line = next(line for line in server["log"].read_text().splitlines() if "uploads in" in line)
    folder = Path(line.split("uploads in ")[1].split(" (")[0])
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_second_browser_gets_in_use_and_none_of_the_first_ones_data(page, server):
    assert load(page, "private.nii.gz", "loaded private") == "loaded private"
    second = chromium()
    try:
        second.get(server["url"])
        wait_for(lambda: second.find_elements(By.ID, "drdm-in-use"), 30, "the in-use page")
        time.sleep(2)  # anything that would arrive late
        source = second.page_source
        assert not second.find_elements(By.ID, "drdm-generate") and not view_images(second)
        for secret_of_the_first in ("private", "stack", str(server["data"])):
            assert secret_of_the_first not in source
        page.quit()  # the first person leaves: the in-use page opens the app by itself
        wait_for(lambda: "loaded" in status(second), 60, "the app in the second browser")
        assert status(second) == "loaded stack"  # the server's start volume, not the first person's
        assert second.find_element(By.ID, "drdm-volume-path").get_attribute("value") == "stack.nii.gz"
        assert "private" not in second.page_source
    finally:
        second.quit()


def test_idle_browser_gives_way_and_the_upload_folder_goes_at_exit(server, tmp_path):
    """A second, short-lived server with ``--idle-minutes 0.1``: a browser idle for 6 s gives way to a second one,
    which sees none of its data; the server's upload folder is gone once the server stopped."""
    log = tmp_path / "server.log"
    arguments = [str(server["data"] / "stack.nii.gz"), "--model", str(server["root"] / "field-only-2d.safetensors"),
                 "--device", "cpu", "--idle-minutes", "0.1"]
    with served(arguments, log, 180) as url:
        line = next(line for line in log.read_text().splitlines() if "uploads in" in line)
        folder = Path(line.split("uploads in ")[1].split(" (")[0])
        assert folder.is_dir()
        first, second = chromium(), chromium()
        try:
            first.get(url)
            wait_for(lambda: len(view_images(first)) >= 3 and "loaded" in status(first), 120, "the first browser")
            assert load(first, "private.nii.gz", "loaded private") == "loaded private"
            second.get(url)
            wait_for(lambda: second.find_elements(By.ID, "drdm-in-use"), 30, "the in-use page")
            wait_for(lambda: "loaded" in status(second), 60, "the app once the first browser is idle")
            assert status(second) == "loaded stack" and "private" not in second.page_source
        finally:
            first.quit()
            second.quit()
    assert not folder.exists()
