"""A raw wslink client of ``drdm web`` (tests, benchmarks, automation without a browser).

It does what the page does, by hand: exchanges the printed link's secret for a session credential (the cookie of
the ``303`` answer), opens the WebSocket with it, says ``wslink.hello`` and calls RPCs, in wslink's chunked msgpack
messages::

    async with Client(url) as client:      # url: the link drdm web printed
        await client.login()               # the credential, the WebSocket, the hello
        reply = await client.call("trame.state.get")
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import msgpack
from wslink.chunking import UnChunker, generate_chunks

CHUNK_BYTES = 1024 * 1024


def base_url(url: str) -> str:
    """``http://host:port`` of a page URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def ws_url(url: str) -> str:
    """The WebSocket URL of a page URL (``ws://host:port/ws``)."""
    return base_url(url).replace("http", "ws", 1) + "/ws"


def rpc(method: str, args: list | None = None, rpc_id: str = "rpc:c0:0") -> bytes:
    """One wslink request, packed (msgpack)."""
    return msgpack.packb({"wslink": "1.0", "id": rpc_id, "method": method, "args": args or [], "kwargs": {}})


def hello(secret: str = "") -> bytes:
    """The ``wslink.hello`` a page sends first (the hello's secret is not what admits a client: the cookie is)."""
    return rpc("wslink.hello", [{"secret": secret}], "system:c0:0")


def chunk_header(message_id: int, offset: int, total: int) -> bytes:
    """A wslink chunk header: id, offset and total size (little-endian uint32)."""
    return b"".join(n.to_bytes(4, "little") for n in (message_id, offset, total))


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid`` in MB (``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class Client:
    """One browser-less session of ``drdm web`` at ``url`` (the printed link; see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> Client:
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # unsafe: IP hosts too
        return self

    async def __aexit__(self, *exc) -> None:
        if self.ws is not None:
            await self.ws.close()
        await self.session.close()

    async def exchange(self) -> aiohttp.ClientResponse:
        """``GET`` the link without following its redirect: the answer sets the session credential."""
        async with self.session.get(self.url, allow_redirects=False) as response:
            await response.read()
            return response

    async def connect(self, **options: Any) -> aiohttp.ClientWebSocketResponse:
        """Open the WebSocket (with the credential, if :meth:`exchange` got one)."""
        self.ws = await self.session.ws_connect(ws_url(self.url), headers={"Origin": base_url(self.url)}, **options)
        return self.ws

    async def send(self, message: bytes, chunk_bytes: int = CHUNK_BYTES) -> None:
        for chunk in generate_chunks(message, chunk_bytes):
            await self.ws.send_bytes(chunk)

    async def receive(self, timeout: float = 30) -> dict:
        """The next whole message from the server (a decoded dict); ``ConnectionError`` if the server closed."""
        unchunker = UnChunker()
        unchunker.set_max_message_size(1 << 31)
        while True:
            message = await self.ws.receive(timeout=timeout)
            if message.type != aiohttp.WSMsgType.BINARY:
                raise ConnectionError(f"the server closed the WebSocket ({self.ws.close_code})")
            reply = unchunker.process_chunk(message.data)
            if reply is not None:
                return reply

    async def reply_to(self, rpc_id: str, timeout: float = 30) -> dict:
        """The server's answer to request ``rpc_id`` (published messages in between are skipped)."""
        while True:
            reply = await self.receive(timeout)
            if reply.get("id") == rpc_id:
                return reply

    async def login(self) -> dict:
        """Exchange the link, connect, say hello; returns the hello's answer. The hello carries the link's secret,
        as servers before the session credential expected (this one admits by the credential alone)."""
        await self.exchange()
        await self.connect()
        await self.send(hello(parse_qs(urlsplit(self.url).query).get("secret", [""])[0]))
        return await self.reply_to("system:c0:0")

    async def call(self, method: str, *args: Any) -> dict:
        """Call an RPC and return the server's answer (``result`` or ``error``)."""
        rpc_id = f"rpc:c0:{next(self._ids)}"
        await self.send(rpc(method, list(args), rpc_id))
        return await self.reply_to(rpc_id)
