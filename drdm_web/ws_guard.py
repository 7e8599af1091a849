"""The WebSocket route of ``drdm web``, guarded: nothing held before login, caps after it, no stale state, no traces.

wslink 2.6's aiohttp handler (``AioHttpWsHandler.handleWsRequest``) has four weaknesses that matter to a server
reachable by strangers (docs/web.md, "Upstream", has the write-up with reproductions):

1. it registers a connection before the WebSocket handshake; a plain ``GET /ws`` fails the handshake, its cleanup
   then fails too (``KeyError`` in ``onClose``), and the dead entry stays: ``--timeout`` never fires again and
   ``application.exit`` fails on it;
2. it reassembles chunks of unauthenticated clients without a bound on their number (one 512-byte buffer per new
   message id), and after login allocates whatever size a chunk header declares, up to 4 GiB;
3. an exception in an RPC is sent to the client with its full traceback;
4. any connection, even one never authenticated, cancels the ``--timeout`` shutdown.

:class:`WebSocketGuard` answers the WebSocket route itself, from the middleware (``pages.front_door``), and uses
wslink's handler only for what it does well (the hello, RPCs, publishing):

- the request must be a WebSocket upgrade (else 400), from this origin (else 403), with a valid session
  credential (else 403), and at most :data:`MAX_BEFORE_LOGIN` connections may be waiting for their hello
  (else 503): none of these leaves anything behind;
- the connection is registered only once the handshake succeeded, and always unregistered;
- until the hello is accepted, the only message allowed is that hello (one chunk of at most 8 KiB, within
  :data:`HELLO_SECONDS`); anything else, text frames included, closes the connection;
- chunks are reassembled by :class:`~drdm_web.chunks.CappedUnChunker` (``--max-upload-mb`` checked at a
  message's first chunk; per-connection and process-wide caps), and WebSocket frames are at most
  :data:`FRAME_BYTES` (the chunk size the server announces);
- RPC errors reach the client without their data (no traceback, no exception text);
- only admitted browsers count for ``--timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from .audit import AccessLog
from .chunks import CLOSE_POLICY, ByteBudget, CappedUnChunker, ChunkRefused
from .session import COOKIE, SessionGate

log = logging.getLogger("drdm.web")
FRAME_BYTES = 1024 * 1024  # the chunk size the server announces and sends; the largest frame it accepts (+ slack)
FRAME_SLACK = 4096
HELLO_SECONDS = 10.0
MAX_BEFORE_LOGIN = 16
EXCEPTION_ERROR = -32001  # wslink's code for "Exception raised"


class WebSocketGuard:
    """The guarded WebSocket route (see the module docstring) for wslink's aiohttp ``handlers`` of one server."""

    def __init__(self, web_server, gate: SessionGate, audit: AccessLog, message_limit: int,
                 on_message: Callable[[str], None] | None = None) -> None:
        handlers = list(getattr(web_server, "_ws_handlers", None) or [])
        if not handlers or not all(hasattr(h, "connections") and hasattr(h, "unchunkers") for h in handlers):
            raise RuntimeError("this wslink version has no aiohttp WebSocket handler drdm web can guard")
        self.web_server, self.handlers = web_server, handlers
        self.gate, self.audit, self.on_message = gate, audit, on_message
        self.message_limit = int(message_limit)
        self.budget = ByteBudget(2 * self.message_limit + MAX_BEFORE_LOGIN * 8 * 1024)
        self.waiting = 0  # connections waiting for their hello
        self.admitted: set[str] = set()
        self._announce_frame_size()
        for handler in handlers:
            self._strip_error_details(handler)
            handler.disconnectClients = self._disconnect_all(handler)

    @staticmethod
    def _announce_frame_size() -> None:
        """wslink announces its chunk size in the hello's answer and chunks what it sends with it."""
        import wslink.protocol

        wslink.protocol.MAX_MSG_SIZE = FRAME_BYTES

    @staticmethod
    def _strip_error_details(handler) -> None:
        send = handler.sendWrappedError

        async def without_details(rpcid, code, message, data=None, client_id=None):
            if code == EXCEPTION_ERROR:
                exception = str((data or {}).get("exception", "")) if isinstance(data, dict) else ""
                log.warning("drdm web: a request from the page failed (%s)", exception.split("(", 1)[0] or "error")
            return await send(rpcid, code, message, None, client_id=client_id)

        handler.sendWrappedError = without_details

    @staticmethod
    def _disconnect_all(handler):
        async def disconnect() -> None:  # wslink's version fails when a connection goes while it iterates
            for ws in list(handler.connections.values()):
                with contextlib.suppress(Exception):
                    await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"Server shutdown")
            handler.publishManager.unregisterProtocol(handler)

        return disconnect

    def _handler_of(self, request: web.Request):
        target = getattr(request.match_info, "handler", None)
        owner = getattr(target, "__self__", None)
        if owner in self.handlers:
            return owner
        return self.handlers[0] if request.path.rstrip("/") == "/ws" else None

    def _refuse(self, request: web.Request, status: int, why: str) -> web.Response:
        self.audit(request.remote, "refused", why)
        return web.Response(status=status, text=f"{why}\n", headers={"Cache-Control": "no-store"})

    async def answer(self, request: web.Request) -> web.StreamResponse | None:
        """The WebSocket route's answer, or None for any other request."""
        handler = self._handler_of(request)
        if handler is None:
            return None
        ws = web.WebSocketResponse(max_msg_size=FRAME_BYTES + FRAME_SLACK, heartbeat=_heartbeat(),
                                   compress=bool(getattr(self.web_server, "ws_compress", True)))
        if request.method != "GET" or not ws.can_prepare(request).ok:
            return self._refuse(request, 400, "not a WebSocket upgrade")
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc.lower() not in _hosts(request):
            return self._refuse(request, 403, "a WebSocket from another origin")
        if not self.gate.valid(request.cookies.get(COOKIE)):
            return self._refuse(request, 403, "a WebSocket without a valid session credential")
        if self.waiting >= MAX_BEFORE_LOGIN:
            return self._refuse(request, 503, "too many WebSockets waiting for their hello")
        self.waiting += 1
        try:
            await ws.prepare(request)
        except Exception:
            self.waiting -= 1
            return self._refuse(request, 400, "a failed WebSocket handshake")
        await self._serve(handler, request, ws)
        return ws

    async def _serve(self, handler, request: web.Request, ws: web.WebSocketResponse) -> None:
        client_id = uuid.uuid4().hex
        handler.connections[client_id] = ws
        unchunker = CappedUnChunker(self.budget, self.message_limit)
        waiting = True
        deadline = asyncio.get_running_loop().create_task(self._hello_deadline(ws))
        try:
            await handler.onConnect(request, client_id)
            handler.unchunkers[client_id] = unchunker
            async for message in ws:
                if message.type != aiohttp.WSMsgType.BINARY:
                    await self._close(request, ws, CLOSE_POLICY, "a text message (wslink speaks binary)")
                    break
                try:
                    full = unchunker.process_chunk(message.data)
                except ChunkRefused as refused:
                    await self._close(request, ws, refused.code, str(refused))
                    break
                if full is None:
                    continue
                if waiting and not _is_hello(full):
                    await self._close(request, ws, CLOSE_POLICY, "a message other than the hello before login")
                    break
                if self.on_message is not None:
                    self.on_message(client_id)
                try:
                    with handler.network_monitor:
                        await handler.onCompleteMessage(full, client_id)
                except (ConnectionError, RuntimeError):
                    break  # the page went while its request ran (a reload): nothing to answer
                if waiting:
                    if not handler.isClientAuthenticated(client_id):
                        await ws.close(code=CLOSE_POLICY, message=b"not admitted")
                        break
                    waiting = False
                    self.waiting -= 1
                    deadline.cancel()
                    self.admitted.add(client_id)
                    self.web_server.shutdown_cancel()
        finally:
            deadline.cancel()
            if waiting:
                self.waiting -= 1
            unchunker.release_pending_messages()
            with contextlib.suppress(Exception):
                await handler.onClose(client_id)
            handler.unchunkers.pop(client_id, None)
            handler.connections.pop(client_id, None)
            handler.authentified_client_ids.discard(client_id)
            if client_id in self.admitted:
                self.admitted.discard(client_id)
                if not self.admitted:
                    self.web_server.shutdown_cancel()
                    self.web_server.shutdown_schedule()

    async def close_client(self, client_id: str, message: bytes = b"session taken over") -> None:
        """Close the WebSocket of ``client_id`` (an idle holder's, or the same browser's older page), if it is open."""
        for handler in self.handlers:
            connection = handler.connections.get(client_id)
            if connection is not None:
                await connection.close(message=message)

    async def _hello_deadline(self, ws: web.WebSocketResponse) -> None:
        await asyncio.sleep(HELLO_SECONDS)
        await ws.close(code=CLOSE_POLICY, message=b"no hello")

    async def _close(self, request: web.Request, ws: web.WebSocketResponse, code: int, why: str) -> None:
        self.audit(request.remote, "refused", f"{why} (connection closed)")
        await ws.close(code=code, message=why.encode()[:120])


def _hosts(request: web.Request) -> set[str]:
    """The names this server is reached by for ``request``: its Host, and a reverse proxy's X-Forwarded-Host (a
    page's script can set neither on a WebSocket, so the browser's Origin is compared with them)."""
    names = {request.host.lower()}
    names.update(h.strip().lower() for h in request.headers.get("X-Forwarded-Host", "").split(",") if h.strip())
    return names


def _is_hello(message: object) -> bool:
    return (isinstance(message, dict) and message.get("method") == "wslink.hello"
            and str(message.get("id", "")).startswith("system:"))


def _heartbeat() -> float | None:
    """wslink's heartbeat setting (``WSLINK_HEART_BEAT``, 30 s by default)."""
    from wslink.backends import aiohttp as backend

    return getattr(backend, "HEART_BEAT", 30)
