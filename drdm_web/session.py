"""One browser at a time: ``drdm web`` shows its scene (the data, the results) to one person only.

A trame app's state and views are shared by every connected browser, so the app admits one browser session:

- :class:`SessionGate` (plain logic) knows the browser that holds the session (its WebSocket client id and its
  browser cookie), when it was last active, and whether it went idle (``--idle-minutes``).
- :class:`OneBrowserProtocol` is a wslink link protocol: its ``validateToken`` (wslink's own authentication hook,
  called on every ``wslink.hello``) admits a client only if it carries the access secret **and** the session is
  free or already this browser's. wslink sends unauthenticated clients no state, no images, no RPC results.
- :func:`page_routes` answers ``/index.html`` before the static files: the app for the holder (or anyone while
  the session is free), the ``drdm-in-use`` page for any other browser, and a ``drdm-no-access`` page without
  the secret. Neither page carries anything of the scene.

A different browser taking over a free (or idle) session first gets the scene emptied (the app's
``end_session``); the same browser coming back (a page reload) keeps its work.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from wslink.websocket import LinkProtocol

log = logging.getLogger("drdm.web")
COOKIE = "drdm_browser"
RETRY_SECONDS = 5

_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{refresh}<title>DRDM</title>
<style>body{{font-family:sans-serif;background:#121212;color:#eee;display:flex;align-items:center;
justify-content:center;height:90vh}}div{{max-width:36em;line-height:1.5}}</style></head>
<body><div id="{id}"><h2>{title}</h2><p>{text}</p></div></body></html>"""


def in_use_page(idle_minutes: float) -> str:
    """The page a second browser gets (nothing of the scene in it); it reloads itself every few seconds."""
    after = f", or after {idle_minutes:g} idle minutes" if idle_minutes > 0 else ""
    return _PAGE.format(refresh=f'<meta http-equiv="refresh" content="{RETRY_SECONDS}">', id="drdm-in-use",
                        title="DRDM is in use",
                        text="Another browser is using this server. It serves one person at a time, so that nobody "
                             "sees another person's images or results. This page opens the app by itself when the "
                             f"other session ends (its tab is closed{after}).")


def no_access_page() -> str:
    """The page for a URL without the right ``secret``: no app is sent."""
    return _PAGE.format(refresh="", id="drdm-no-access", title="Access link needed",
                        text="Open the link that <code>drdm web</code> printed when it started: it carries the "
                             "access secret (<code>?secret=…</code>). Ask whoever runs the server for it.")


class SessionGate:
    """Who holds the session: at most one WebSocket client (and its browser cookie) at a time."""

    def __init__(self, idle_minutes: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_seconds = 60.0 * float(idle_minutes)
        self.clock = clock
        self.owner: str | None = None  # WebSocket client id
        self.owner_cookie: str | None = None  # the browser of the current (or last) session
        self.claimed = False  # whether any browser held the session yet
        self.last_seen = clock()

    def idle(self) -> bool:
        """True when the holder sent nothing for ``--idle-minutes`` (never when 0)."""
        return self.owner is not None and self.idle_seconds > 0 and self.clock() - self.last_seen >= self.idle_seconds

    def admits_page(self, cookie: str | None) -> bool:
        """Whether a page load with ``cookie`` gets the app (the session is free, idle, or this browser's)."""
        return self.owner is None or self.idle() or (cookie is not None and cookie == self.owner_cookie)

    def claim(self, client_id: str, cookie: str | None) -> tuple[bool, bool]:
        """Try to give the session to ``client_id``: returns ``(admitted, new_person)``; ``new_person`` means the
        scene must be emptied first (a different browser than the last session's; never for the first one, which
        finds only what the server was started with)."""
        if self.owner is not None and not self.idle() and (cookie is None or cookie != self.owner_cookie):
            return False, False
        new_person = self.claimed and (cookie is None or cookie != self.owner_cookie)
        self.owner, self.owner_cookie, self.last_seen, self.claimed = client_id, cookie, self.clock(), True
        return True, new_person

    def seen(self, client_id: str) -> None:
        """The holder sent a message (it is not idle)."""
        if client_id == self.owner:
            self.last_seen = self.clock()

    def release(self, client_id: str) -> bool:
        """``client_id`` disconnected; True if it held the session (which is now free)."""
        if client_id != self.owner:
            return False
        self.owner = None
        return True


class OneBrowserProtocol(LinkProtocol):
    """wslink's authentication hook: the access secret, then the one-browser gate.

    ``on_claim(new_person)`` runs before a client is admitted (the app empties the scene for a new person);
    ``on_release()`` when the holder disconnects; ``close_client(client_id)`` ends a WebSocket (an idle holder's).
    """

    def __init__(self, gate: SessionGate, on_claim: Callable[[bool], None], on_release: Callable[[], None],
                 close_client: Callable[[str], object]) -> None:
        super().__init__()
        self.gate = gate
        self.on_claim, self.on_release, self.close_client = on_claim, on_release, close_client
        self._cookies: dict[str, str | None] = {}

    def onConnect(self, request, client_id):  # noqa: N802 (wslink's name)
        cookies = getattr(request, "cookies", None) or {}
        self._cookies[client_id] = cookies.get(COOKIE)

    async def validateToken(self, token, client_id):  # noqa: N802 (wslink's name)
        """Admit ``client_id`` if ``token`` is the configured secret and the session is free (or its own)."""
        secret = getattr(self.coreServer, "secret", None) or ""
        if not (isinstance(token, str) and secret and hmac.compare_digest(token.encode(), secret.encode())):
            log.warning("drdm web: a browser without the access secret was refused")
            return False
        previous = self.gate.owner
        idle = self.gate.idle()
        admitted, new_person = self.gate.claim(client_id, self._cookies.get(client_id))
        if not admitted:
            log.warning("drdm web: a second browser was refused (the session is in use)")
            return False
        if previous is not None and previous != client_id:  # an idle holder, or this browser's older tab
            log.info("drdm web: session taken over (%s)", "idle" if idle else "same browser")
            await self.close_client(previous)
        self.on_claim(new_person)
        return True

    def onClose(self, client_id):  # noqa: N802 (wslink's name)
        self._cookies.pop(client_id, None)
        if self.gate.release(client_id):
            self.on_release()


def page_routes(gate: SessionGate, secret: str, www: str | Path, idle_minutes: float) -> list[web.RouteDef]:
    """``GET /index.html``: the app (with the browser cookie) for the holder or a free session, else a page that
    says why; registered before wslink's static files, so it takes precedence."""
    index = Path(www) / "index.html"
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

    async def page(request: web.Request) -> web.Response:
        given = request.query.get("secret", "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            return web.Response(text=no_access_page(), content_type="text/html", status=403, headers=headers)
        cookie = request.cookies.get(COOKIE)
        if not gate.admits_page(cookie):
            return web.Response(text=in_use_page(idle_minutes), content_type="text/html", status=503,
                                headers={**headers, "Retry-After": str(RETRY_SECONDS)})
        response = web.Response(body=index.read_bytes(), content_type="text/html", headers=headers)
        if not cookie:
            response.set_cookie(COOKIE, secrets.token_urlsafe(18), httponly=True, samesite="Strict")
        return response

    return [web.get("/index.html", page)]
