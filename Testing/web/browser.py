"""Driving the ``drdm web`` page from Python with selenium and headless Chromium (tests, benchmarks, automation).

Everything goes through the page's stable HTML ids (``drdm-generate``, ``drdm-status``, …), as a user's clicks do.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run")
T = TypeVar("T")


def chromium(binary: str = CHROMIUM, driver: str = CHROMEDRIVER) -> webdriver.Chrome:
    """A headless Chromium session (Debian's ``chromium`` and ``chromium-driver``; nothing is downloaded)."""
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(driver), options=options)


def wait_for(condition: Callable[[], T], seconds: float, what: str) -> T:
    """Poll ``condition`` until it returns something true; raises ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # the element may be re-rendered while we look
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {seconds:.0f} s waiting for {what}")


def view_images(driver) -> list:
    """The rendered slice/3D view images (the remote-rendered ``img`` elements)."""
    return [img for img in driver.find_elements(By.TAG_NAME, "img")
            if driver.execute_script("return arguments[0].naturalWidth", img) > 50]


def views_png(driver) -> list[bytes]:
    """What the views show now, as PNG bytes (compare two calls to see whether the views changed)."""
    return [img.screenshot_as_png for img in view_images(driver)]


def status(driver) -> str:
    return driver.find_element(By.ID, "drdm-status").text.strip()


def finished(driver) -> str | None:
    """The status text once a generation has ended (done, cancelled or an error), else None."""
    text = status(driver)
    return text if text.endswith(("done", "cancelled")) or text.startswith("error") else None


def generate(driver, seconds: float = 600) -> str:
    """Click Generate, wait until it started, then until it ended; returns the final status text."""
    before = status(driver)
    button = driver.find_element(By.ID, "drdm-generate")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    wait_for(lambda: status(driver).startswith("generating") or (status(driver).startswith("error") and status(driver) != before),
             30, "the generation to start")
    return wait_for(lambda: finished(driver), seconds, "the generation to end")


def type_into(element, text: str) -> None:
    """Replace a field's text the way a user does (select all, type), so that the page's model sees it."""
    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    if text:
        element.send_keys(text)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


URL_LINE = re.compile(r"drdm web: open (http://\S+)")


def printed_url(log_text: str) -> str | None:
    """The URL ``drdm web`` printed (it carries the access secret), or None before it printed one."""
    found = URL_LINE.search(log_text)
    return found.group(1) if found else None


class ServedURL(str):
    """The URL ``drdm web`` printed (a ``str``); ``process`` is the server's ``subprocess.Popen``."""

    process: subprocess.Popen


@contextlib.contextmanager
def served(arguments: list[str], log_path: str | os.PathLike, start_seconds: float = 180,
           cwd: str | os.PathLike | None = None, env: dict[str, str] | None = None) -> Iterator[ServedURL]:
    """Run ``drdm web ARGUMENTS --port <free>`` in a subprocess (in ``cwd``, with ``env``); yields the URL it
    printed (with its access secret; its ``process`` attribute is the server's process) once it listens, stops it
    after."""
    port = free_port()
    command = [sys.executable, "-m", "drdm", "web", *arguments, "--port", str(port)]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        try:
            def listening() -> str | None:
                if process.poll() is not None:
                    raise RuntimeError(f"drdm web exited with {process.returncode}: "
                                       f"{Path(log_path).read_text(errors='replace')[-3000:]}")
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) != 0:
                        return None
                return printed_url(Path(log_path).read_text(errors="replace"))

            url = ServedURL(wait_for_raising(listening, start_seconds, "drdm web to listen"))
            url.process = process
            yield url
        finally:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_for_raising(condition: Callable[[], T], seconds: float, what: str) -> T:
    """:func:`wait_for`, but an exception from ``condition`` ends the wait at once."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {seconds:.0f} s waiting for {what}")


def open_loaded(driver, url: str, seconds: float = 180) -> None:
    """Open ``url`` and wait for the first paint: three or more views drawn and the volume loaded."""
    driver.get(url)
    wait_for(lambda: len(view_images(driver)) >= 3 and status(driver).startswith("loaded"), seconds, "first paint")


def fix_seed(driver, seed: int, level: int) -> None:
    """Untick "random" and type ``seed`` and the start ``level`` (the same work on every run)."""
    from selenium.webdriver.common.by import By

    tick = driver.find_element(By.ID, "drdm-random-seed")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", tick)  # the panel scrolls (a long one)
    tick.click()
    type_into(driver.find_element(By.ID, "drdm-seed"), str(seed))
    type_into(driver.find_element(By.ID, "drdm-level"), str(level))
