"""The wslink weaknesses that ``drdm_web`` guards against (docs/web.md, "Hardening against an attacker") are still
in the installed wslink. When a test here fails, a wslink release has changed that part: re-check the write-up,
and drop the project's guard if the release fixed it."""

from __future__ import annotations

import asyncio
import inspect

import pytest

pytest.importorskip("wslink", reason="the web extra is not installed (pip install -e '.[web]')")
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402
from raw_client import chunk_header  # noqa: E402
from wslink.chunking import UnChunker  # noqa: E402
from wslink.protocol import WslinkHandler  # noqa: E402


def test_wslink_holds_any_number_of_messages_before_login():
    unchunker = UnChunker()  # what every new connection gets
    for message_id in range(1000):
        unchunker.process_chunk(chunk_header(message_id, 0, 512) + b"x")
    assert len(unchunker.pending_messages) == 1000  # 1000 × 512 bytes for a client that never logged in


def test_wslink_reserves_a_declared_size_at_the_first_chunk_after_login():
    unchunker = UnChunker()
    unchunker.set_max_message_size(4 * 1024**3)  # what a successful hello does
    unchunker.process_chunk(chunk_header(1, 0, 64 * 1024**2) + b"x")  # 13 bytes on the wire
    assert len(unchunker.pending_messages[1]["content"]) == 64 * 1024**2


def test_wslink_keeps_a_dead_connection_after_a_plain_get_of_its_websocket_route():
    from wslink.backends.aiohttp import WebAppServer
    from wslink.websocket import ServerProtocol

    async def plain_get() -> tuple[int, int]:
        web_app = WebAppServer({"ws": {"ws": ServerProtocol()}, "timeout": 0})
        handler = web_app._ws_handlers[0]
        async with TestClient(TestServer(web_app.app)) as client:
            response = await client.get("/ws")
            return response.status, len(handler.connections)

    assert asyncio.run(plain_get()) == (500, 1)


def test_wslink_sends_the_traceback_of_an_rpc_error():
    assert '"trace": captured_trace' in inspect.getsource(WslinkHandler.onCompleteMessage)
