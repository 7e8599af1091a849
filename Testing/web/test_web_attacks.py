"""``drdm web`` against raw WebSocket clients, as an attacker on the network would try it (no browser): chunk floods
before login, an upload declared far over ``--max-upload-mb``, a plain ``GET /ws``, RPC errors; the server's memory
(RSS) is measured around the floods, and ``--timeout`` must still stop it afterwards. The numbers are the items of
issue 27; ``benchmarks/web_floods.py`` measures the same floods at full size.

One server (``--max-upload-mb 5 --timeout 10``) started after a server of the same user was killed (its upload
folder must be gone); a logged-in raw client holds the session until the oversized upload, so the timeout runs only
from then on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import REPO

pytest.importorskip("trame_slicer", reason="the web extra is not installed (pip install -e '.[web]')")
from browser import served  # noqa: E402
from raw_client import Client, base_url, chunk_header, rss_mb  # noqa: E402

TIMEOUT_S = 10
FLOOD_FRAMES = 200_000  # 13-byte frames, a new message id each: +117 MB on wslink 2.6's reassembly
GiB = 1024**3
FLOOD_MB = 40  # generous (allocator noise) against what the old reassembly held: 117 MB, 1 GiB
KILLED_SERVER = ("import sys, time; from drdm_web.uploads import UploadFolder; u = UploadFolder(1); "
                 "(u.path / 'volume-patient.nii.gz').write_bytes(b'x' * 1000); print(u.path, flush=True); time.sleep(600)")


class Loop:
    """An event loop on its own thread, so that one connection can live across tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine, seconds: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(seconds)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("attacks")
    temporary = root / "tmp"
    temporary.mkdir()
    env = {**os.environ, "TMPDIR": str(temporary)}
    killed = subprocess.Popen([sys.executable, "-c", KILLED_SERVER], stdout=subprocess.PIPE, text=True, env=env,
                              cwd=REPO)
    leftover = Path(killed.stdout.readline().strip())
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    data = root / "data"
    data.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 32, 32), np.int16)), str(data / "stack.nii.gz"))
    arguments = [str(data / "stack.nii.gz"), "--device", "cpu", "--max-upload-mb", "5", "--timeout", str(TIMEOUT_S),
                 "--export-dir", str(root / "exports")]
    loop = Loop()
    try:
        with served(arguments, root / "server.log", 180, env=env) as url:
            holder = Client(url)
            loop.run(holder.__aenter__())
            hello = loop.run(holder.login())
            yield dict(url=url, pid=url.process.pid, process=url.process, holder=holder, hello=hello, loop=loop,
                       leftover=leftover, log=root / "server.log")
            loop.run(holder.__aexit__(None, None, None))
    finally:
        loop.stop()


def test_a_killed_server_s_uploads_were_removed_at_start(server):
    """Item 10: the killed server's folder (its lock no longer held) is gone; the start says so."""
    assert server["leftover"].name.startswith("drdm-web-uploads-") and not server["leftover"].exists()
    assert "removed 1 upload folder(s) left by a server that was killed" in server["log"].read_text()


def test_the_raw_client_holds_the_session(server):
    assert "result" in server["hello"] and server["hello"]["result"]["maxMsgSize"] <= 1024 * 1024, server["hello"]


async def flood(ws: aiohttp.ClientWebSocketResponse, frames: int) -> int | None:
    """Send ``frames`` chunk headers with a new message id each (and one byte), then the close code (None: open)."""
    for index in range(frames):
        try:
            await ws.send_bytes(chunk_header(index + 1, 0, 512) + b"x")
        except (ConnectionError, RuntimeError):
            break
    try:
        message = await ws.receive(timeout=20)
    except asyncio.TimeoutError:
        return None
    return ws.close_code if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) else None


def test_a_chunk_flood_before_login_is_closed_at_once_and_holds_no_memory(server):
    """Item 1: without a credential the WebSocket is refused (403); with one but before the hello, the first chunk
    that is not the hello closes it. Server memory stays flat (wslink 2.6 kept every one: +117 MB for these)."""
    async def attack() -> tuple[int | None, int | None]:
        refused = None
        async with Client(server["url"].split("?")[0]) as client:  # no secret, no credential
            try:
                await client.connect()
                await flood(client.ws, FLOOD_FRAMES)
            except aiohttp.WSServerHandshakeError as error:
                refused = error.status
        async with Client(server["url"]) as client:  # a credential, but no hello
            await client.exchange()
            await client.connect()
            closed = await flood(client.ws, FLOOD_FRAMES)
        return refused, closed

    before = rss_mb(server["pid"])
    refused, closed = server["loop"].run(attack(), 300)
    grown = rss_mb(server["pid"]) - before
    assert grown < FLOOD_MB, f"server memory grew by {grown:.0f} MB"
    assert refused == 403 and closed == 1008


def test_a_plain_get_or_a_broken_handshake_on_the_websocket_route_leaves_nothing(server):
    """Item 2: a plain ``GET /ws`` answered 500 and left a dead connection entry behind; now 400 and nothing left
    (the timeout test below shows the server still stops)."""
    async def requests() -> list[int]:
        ws = base_url(server["url"]) + "/ws"
        async with aiohttp.ClientSession() as session:
            codes = []
            for headers in ({}, {"Upgrade": "websocket", "Connection": "Upgrade"},
                            {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                             "Sec-WebSocket-Key": "not base64"}):
                async with session.get(ws, headers=headers) as response:
                    codes.append(response.status)
            async with session.post(ws, data=b"x") as response:
                codes.append(response.status)
            return codes

    assert server["loop"].run(requests()) == [400, 400, 400, 400]


def test_rpc_errors_reach_the_client_without_traceback(server):
    """Item 8 at the protocol level: wslink sent the exception and its full traceback (server paths) with an RPC
    error; the client now gets the error alone."""
    reply = server["loop"].run(server["holder"].call("trame.state.update", 5))
    assert reply["error"]["message"] == "Exception raised" and "data" not in reply["error"], reply
    assert "Traceback" not in str(reply) and sys.prefix not in str(reply)


def test_an_upload_declared_over_the_limit_is_refused_at_its_first_chunk(server):
    """Item 3: a logged-in client declaring 1 GiB (limit 5 MB) in 13-byte frames made wslink reserve the 1 GiB at
    once; now the first chunk closes the connection (1009) and the server's memory stays flat."""
    holder = server["holder"]

    async def declare() -> int | None:
        for offset in range(2000):
            try:
                await holder.ws.send_bytes(chunk_header(7, offset, GiB) + b"x")
            except (ConnectionError, RuntimeError):
                break
        try:
            message = await holder.ws.receive(timeout=20)
        except asyncio.TimeoutError:
            return None
        return holder.ws.close_code if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) else None

    before = rss_mb(server["pid"])
    closed = server["loop"].run(declare())
    grown = rss_mb(server["pid"]) - before
    assert grown < FLOOD_MB, f"server memory grew by {grown:.0f} MB"
    assert closed == 1009


def test_the_timeout_still_stops_the_server_after_all_this(server):
    """Item 2: with no browser admitted any more, ``--timeout`` stops the server (it never did after a plain
    ``GET /ws``)."""
    server["process"].wait(TIMEOUT_S + 40)
    assert server["process"].returncode is not None
    access = [line for line in server["log"].read_text().splitlines() if line.startswith("drdm web access")]
    assert any("refused: a WebSocket without a valid session credential" in line for line in access)
    assert any("over the limit" in line and "(connection closed)" in line for line in access)
