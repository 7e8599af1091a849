"""``drdm web`` as a hospital runs it, in headless Chromium and raw clients: the link's secret exchanged for a
session credential, the app page only with one, confined files, exports nobody else can reach, upload limit, one
person at a time, the access log.

One server, started the documented way (in the data folder, exports in the default ``./drdm-web-exports`` inside it;
``--secret-file``, ``--max-upload-mb 1``) beside an ``outside`` folder that the page must never open; the tests run
in file order on one page (the first person), a second browser (the next person) comes later, the server is
stopped by the ``application.exit`` RPC at the end. The numbers are the items of issue 27.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp
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
    generate,
    served,
    status,
    type_into,
    view_images,
    wait_for,
)
from raw_client import Client, base_url  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/install_browser.sh, as root)",
                allow_module_level=True)

SECRET = "hospital-Zq8vK2mW0pXr5tYb9nLc3hJd7fGs1aEu6iOo4kTz"  # about 200 bits (drdm_web.access.entropy_bits)
PATIENT_NAMES = ("private", "other_patient", "stack.nii")


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
    arguments = ["stack.nii.gz", "--model", str(weights), "--secret-file", str(secret_file), "--max-upload-mb", "1",
                 "--device", "cpu"]  # the documented start: in the data folder, default export folder
    log = root / "server.log"
    with served(arguments, log, 180, cwd=data) as url:
        yield dict(url=url, root=root, data=data, outside=outside, log=log, exports=data / "drdm-web-exports")


def open_app(driver, url: str, seconds: float = 120) -> None:
    driver.get(url)
    wait_for(lambda: len(view_images(driver)) >= 3 and "loaded" in status(driver), seconds, "the views and the volume")


@pytest.fixture(scope="module")
def page(server):
    driver = chromium()
    try:
        open_app(driver, server["url"])
        yield driver
    finally:
        with contextlib.suppress(Exception):
            driver.quit()


@pytest.fixture(scope="module")
def next_person(server):
    """The next person's browser (opened by the in-use test, kept for the tests after it)."""
    driver = chromium()
    try:
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
    wait_for(lambda: not driver.execute_script("return window.trame.state.get('trame__busy')"), 30, "an idle page")
    time.sleep(0.3)
    driver.find_element(By.ID, "drdm-load").click()
    return wait_for(lambda: status(driver) if expected in status(driver) else None, 30, f"{expected!r} after loading {typed}")


async def http_get(url: str, **options) -> tuple[int, str, aiohttp.typedefs.LooseHeaders]:
    async with aiohttp.ClientSession() as session, session.get(url, allow_redirects=False, **options) as response:
        return response.status, await response.text(errors="replace"), response.headers


def test_the_link_s_secret_is_exchanged_for_a_cookie_and_leaves_the_page(page, server):
    """Item 4: the browser is redirected by the server to ``/``; the secret is in neither the address nor the
    Performance API's entries; the credential is an HttpOnly, SameSite=Strict session cookie scripts cannot read."""
    assert f"?secret={quote(SECRET)}" in server["url"]
    assert status(page) == "loaded stack" and page.find_elements(By.ID, "drdm-generate")
    assert page.current_url == base_url(server["url"]) + "/"
    entries = page.execute_script("return performance.getEntries().map(e => e.name)")
    assert entries and not [name for name in entries if "secret" in name], entries
    assert page.execute_script("return document.referrer") == ""
    [cookie] = page.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and "expiry" not in cookie and cookie["path"] == "/"
    assert page.execute_script("return document.cookie") == ""
    status_code, _, headers = asyncio.run(http_get(server["url"]))
    assert status_code == 303 and headers["Location"] == "/" and "no-store" in headers["Cache-Control"]


@pytest.mark.parametrize("suffix", ["", "?secret=wslink-secret", "?secret=wrong-secret-0123456789",
                                    f"?secret={quote(SECRET)}&secret=x"])
def test_url_without_the_secret_gets_no_app(page, server, suffix):
    driver = chromium()
    try:
        driver.get(server["url"].split("?")[0] + suffix)
        wait_for(lambda: driver.find_elements(By.ID, "drdm-no-access"), 30, "the access page")
        time.sleep(1)
        assert not driver.find_elements(By.ID, "drdm-generate") and not view_images(driver)
        assert "stack" not in driver.page_source and not driver.get_cookies()
    finally:
        driver.quit()


@pytest.mark.parametrize("spelling", ["/", "/index.html", "/./index.html", "/index.html/", "/%2e/index.html",
                                      "/index.html%2f", "//index.html", "/%69ndex.html", "/.%2findex.html",
                                      "/index.html/.", "/assets/../index.html", "/INDEX.HTML", "/index.html?x=1"])
def test_every_spelling_of_the_app_page_without_a_credential_gets_the_no_access_page(page, server, spelling):
    """Item 9: wslink's static route served the app page under other spellings; now only the no-access page."""
    import trame_client

    index = (Path(trame_client.__file__).parent / "module" / "vue3-www" / "index.html").read_text()
    app_marker = index[index.index("<script"):][:60]  # the app page's first script tag
    code, body, _ = asyncio.run(http_get(base_url(server["url"]) + spelling))
    assert code == 403 and 'id="drdm-no-access"' in body and app_marker not in body, (spelling, code, body[:200])


def test_websocket_refuses_a_client_without_a_credential(page, server):
    async def attempts() -> tuple[int, dict]:
        async with Client(server["url"].split("?")[0] + "?secret=wslink-secret") as client:
            await client.exchange()  # a wrong secret: no credential
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.connect()
        async with Client(server["url"]) as client:  # the right link, but the page above holds the session
            return refused.value.status, await client.login()

    code, reply = asyncio.run(attempts())
    assert code == 403
    assert "error" in reply and "result" not in reply, reply


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


@pytest.mark.parametrize("typed, reason", [("a" * 300 + ".nii.gz", "longer than 255 bytes"),
                                           ("x/" * 2100 + "y.nii.gz", "the path is too long")])
def test_an_over_long_path_ends_in_one_error_line(page, server, typed, reason):
    """Item 8: it used to send the server's traceback (source, venv and data paths) instead."""
    before = loaded(page)
    page.execute_script("window.trame.state.set('drdm_volume_path', arguments[0])", typed)  # typing 4 kB is slow
    wait_for(lambda: page.find_element(By.ID, "drdm-volume-path").get_attribute("value") == typed, 10, "the path")
    time.sleep(0.3)
    page.find_element(By.ID, "drdm-load").click()
    text = wait_for(lambda: status(page) if reason in status(page) else None, 30, reason)
    assert text.startswith("error: ") and "\n" not in text and len(text) < 350, text
    source = page.page_source
    assert "Traceback" not in source and "site-packages" not in source and str(server["data"]) not in source
    assert loaded(page) == before


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


def upload_folder(log: Path) -> Path:
    line = next(line for line in log.read_text().splitlines() if "uploads in" in line)
    return Path(line.split("uploads in ")[1].split(" (")[0])


def test_upload_folder_is_owner_only(server):
    assert stat.S_IMODE(upload_folder(server["log"]).stat().st_mode) == 0o700


def test_a_reload_keeps_the_work(page):
    """Item 4: F5 showed the no-access page; the session credential brings the same person back to the work."""
    assert load(page, "private.nii.gz", "loaded private") == "loaded private"
    page.refresh()
    wait_for(lambda: len(view_images(page)) >= 3 and "loaded" in status(page), 60, "the app after a reload")
    assert status(page) == "loaded private"
    assert page.find_element(By.ID, "drdm-volume-path").get_attribute("value") == "private.nii.gz"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_an_export_never_writes_through_a_planted_link(page, server):
    """Item 6: a link planted under the name the app will use (after a first export taught it) is not written
    through, its target is untouched, the export takes a new name."""
    assert generate(page, 240).endswith("done")
    exports = server["exports"]
    page.find_element(By.ID, "drdm-export-transform").click()
    wait_for(lambda: status(page).startswith("exported") and status(page).endswith("done"), 60, "export transform")
    [first] = list(exports.glob("*_transform.h5"))
    shown_first = status(page)
    victim = server["outside"] / "victim.h5"
    victim.write_bytes(b"precious")
    first.unlink()
    first.symlink_to(victim)  # planted where the next export would go
    page.find_element(By.ID, "drdm-export-transform").click()
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: status(page).endswith("-2.h5: done") or victim.read_bytes() != b"precious", 60,
                 "the second export")
    assert victim.read_bytes() == b"precious" and first.is_symlink()
    again = first.with_name(first.name.replace(".h5", "-2.h5"))
    assert again.stat().st_size > 1000
    assert (shown_first, status(page)) == (f"exported {first.name}: done", f"exported {again.name}: done")  # names
    # in the export folder, never the server's path


def test_exports_are_owner_only(page, server):
    """Item 10: exports were 0644 in 0755 folders; now files 0600, folders 0700."""
    exports = server["exports"]
    before = status(page)
    page.find_element(By.ID, "drdm-export-all").click()
    wait_for(lambda: status(page) != before and status(page).startswith("exported") and status(page).endswith("done"),
             60, "export all")
    [folder] = [p for p in exports.iterdir() if p.is_dir() and not p.is_symlink()]
    server["export_folder"] = folder
    assert mode(exports) == 0o700 and mode(folder) == 0o700
    assert {mode(p) for p in folder.iterdir()} == {0o600}
    assert {mode(p) for p in exports.glob("*.h5") if not p.is_symlink()} == {0o600}


def test_second_browser_gets_in_use_and_none_of_the_first_ones_data(page, server, next_person):
    second = next_person
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


def test_the_next_person_cannot_open_the_previous_person_s_exports(server, next_person):
    """Item 5: typing a path into the export folder (which lies in the data folder here) opens nothing, and the
    answer is the same whether the file is there or not."""
    folder = server["export_folder"]
    exported = f"drdm-web-exports/{folder.name}/image.nii.gz"
    assert (server["data"] / exported).is_file()
    there = load(next_person, exported, "error")
    assert status(next_person).startswith("error") and "private" not in loaded(next_person)
    missing = load(next_person, "drdm-web-exports/no_such_T1_seed1/image.nii.gz", "error")
    assert there.replace(folder.name, "X").replace("image.nii.gz", "") == \
        missing.replace("no_such_T1_seed1", "X").replace("image.nii.gz", "")
    assert "export folder cannot be opened" in there


def test_the_link_opened_again_in_the_same_browser_starts_from_an_empty_scene(server, next_person):
    """Item 10: on a shared browser profile the next person opening the link got the previous one's scene; a new
    use of the link is a new person (a reload, with the live credential, keeps the work: above)."""
    assert load(next_person, "private.nii.gz", "loaded private") == "loaded private"
    next_person.get(server["url"])
    wait_for(lambda: len(view_images(next_person)) >= 3 and "loaded" in status(next_person), 60, "the app again")
    assert status(next_person) == "loaded stack" and "private" not in next_person.page_source


def test_the_access_log_records_who_came_and_the_server_log_names_no_patient_file(server):
    """Item 10: one access line per admission, refusal, in-use answer and end (time, address, event); no
    patient file name anywhere in the server's log at the default level."""
    text = server["log"].read_text(errors="replace")
    access = [line for line in text.splitlines() if line.startswith("drdm web access ")]
    for event in ("admitted:", "refused:", "in use:", "ended:"):
        assert any(f" 127.0.0.1 {event} " in line for line in access), event
    assert any("wrong secret" in line for line in access)
    for name in PATIENT_NAMES:
        assert name not in text, name


def test_a_plain_get_of_the_websocket_route_leaves_no_state_and_exit_still_works(server, next_person):
    """Item 2: ``GET /ws`` without an upgrade answered 500 and left a dead connection behind, after which the
    ``application.exit`` RPC failed; now 400, nothing left, and exit stops the server."""
    next_person.quit()
    ws_route = base_url(server["url"]) + "/ws"
    assert asyncio.run(http_get(ws_route))[0] == 400
    assert asyncio.run(http_get(ws_route, headers={"Upgrade": "websocket", "Connection": "Upgrade"}))[0] == 400

    async def exit_server() -> dict:
        async with Client(server["url"]) as client:
            assert "result" in await client.login()
            return await client.call("application.exit")

    process = server["url"].process
    reply = asyncio.run(exit_server())
    assert "error" not in reply, reply
    process.wait(30)
    assert process.returncode is not None


def test_idle_browser_gives_way_and_the_upload_folder_goes_at_exit(server, tmp_path):
    """A second, short-lived server with ``--idle-minutes 0.1``: a browser idle for 6 s gives way to a second one,
    which sees none of its data; the server's upload folder is gone once the server stopped."""
    log = tmp_path / "server.log"
    arguments = [str(server["data"] / "stack.nii.gz"), "--model", str(server["root"] / "field-only-2d.safetensors"),
                 "--device", "cpu", "--idle-minutes", "0.1", "--export-dir", str(tmp_path / "exports")]
    with served(arguments, log, 180) as url:
        folder = upload_folder(log)
        assert folder.is_dir()
        first, second = chromium(), chromium()
        try:
            open_app(first, url)
            assert load(first, "private.nii.gz", "loaded private") == "loaded private"
            second.get(url)
            wait_for(lambda: second.find_elements(By.ID, "drdm-in-use"), 30, "the in-use page")
            wait_for(lambda: "loaded" in status(second), 60, "the app once the first browser is idle")
            assert status(second) == "loaded stack" and "private" not in second.page_source
        finally:
            first.quit()
            second.quit()
    assert not folder.exists()
