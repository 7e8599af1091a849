"""The HTTP front door of ``drdm web``: the link's secret exchanged for a session credential, the app page only
with one, and the same answer for every spelling of that page.

- ``GET /?secret=KEY`` (any spelling of the app page) with the right secret: a new session credential is set as a
  cookie (``HttpOnly``: page scripts cannot read it; ``SameSite=Strict``: other sites cannot send it; no expiry:
  it ends with the browser session) and the answer is ``303 See Other`` to ``/``, so that the page the browser
  shows, reloads and keeps in its tab has no secret in its address. A wrong secret gets the ``drdm-no-access`` page.
- ``GET /`` (or ``/index.html``) with a valid credential: the app if the session is free, idle or this
  credential's; else the ``drdm-in-use`` page, which reloads itself. Without one: the ``drdm-no-access`` page.
- Any other spelling of the app page (``/./index.html``, ``/index.html/``, ``/%2e/index.html``, ``//index.html``,
  ``/index.html%2f``, …) is answered the same way, never by the static file route; and if a static route ever
  answers with the app's ``index.html`` anyway, that answer is replaced.

:func:`front_door` is the aiohttp middleware that puts this (and the WebSocket guard, ``ws_guard``) before every
route of wslink.
"""

from __future__ import annotations

import hmac
import posixpath
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import unquote

from aiohttp import web

from .audit import AccessLog
from .session import COOKIE, SessionGate

RETRY_SECONDS = 5
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
           "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "frame-ancestors 'none'"}
APP_NAMES = ("", ".", "index.html")

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
    """The page for a request without the right secret or a valid session credential: no app is sent."""
    return _PAGE.format(refresh="", id="drdm-no-access", title="Access link needed",
                        text="Open the link that <code>drdm web</code> printed when it started: it carries the "
                             "access secret (<code>?secret=…</code>). Ask whoever runs the server for it.")


def page_names(request: web.BaseRequest) -> set[str]:
    """What the request's path names, under every decoding a server or file system could apply: the path as
    aiohttp decoded it and the raw path decoded up to three times, with backslashes as slashes, ``.`` and ``..``
    folded and the slashes around it stripped."""
    names = set()
    for text in (request.path, request.raw_path.split("?", 1)[0]):
        for _ in range(4):
            names.add(posixpath.normpath("/" + text.replace("\\", "/")).strip("/"))
            text = unquote(text)
    return names


def is_app_page(request: web.BaseRequest) -> bool:
    """Whether the request names the app page (``/``, ``/index.html``) in any spelling."""
    return any(name.casefold() in APP_NAMES for name in page_names(request))


def is_canonical(request: web.BaseRequest) -> bool:
    return request.raw_path.split("?", 1)[0] in ("/", "/index.html")


def _html(text: str, status: int, **headers: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", status=status, headers={**HEADERS, **headers})


class Pages:
    """The app page's answers (see the module docstring); ``audit`` gets one line per admission or refusal."""

    def __init__(self, gate: SessionGate, secret: str, index: str | Path, idle_minutes: float,
                 audit: AccessLog) -> None:
        self.gate, self.secret, self.index = gate, secret, Path(index)
        self.idle_minutes, self.audit = idle_minutes, audit

    def _right_secret(self, given: str) -> bool:
        return bool(self.secret) and hmac.compare_digest(given.encode("utf-8", "replace"), self.secret.encode())

    async def answer(self, request: web.Request) -> web.StreamResponse | None:
        """The answer for a request of the app page, or None for any other request."""
        if not is_app_page(request):
            return None
        address = request.remote
        given = request.query.getall("secret", [])
        if given:
            if len(given) == 1 and self._right_secret(given[0]):
                response = web.Response(status=303, headers={**HEADERS, "Location": "/"})
                response.set_cookie(COOKIE, self.gate.issue(), httponly=True, samesite="Strict", path="/")
                self.audit(address, "admitted", "the link's secret was exchanged for a new session credential")
                return response
            self.audit(address, "refused", "wrong secret in the link")
            return _html(no_access_page(), 403)
        credential = request.cookies.get(COOKIE)
        if not self.gate.valid(credential):
            self.audit(address, "refused", "the app page without a valid session credential")
            response = _html(no_access_page(), 403)
            if credential is not None:
                response.del_cookie(COOKIE, path="/")
            return response
        if not is_canonical(request):
            return web.Response(status=303, headers={**HEADERS, "Location": "/"})
        if not self.gate.admits_page(credential):
            self.audit(address, "in use", "another browser holds the session")
            return _html(in_use_page(self.idle_minutes), 503, **{"Retry-After": str(RETRY_SECONDS)})
        return web.Response(body=self.index.read_bytes(), content_type="text/html", headers=HEADERS)

    def checked(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        """A static route's answer, unless it is the app's ``index.html`` (then the no-access page)."""
        path = getattr(response, "_path", None)  # aiohttp's FileResponse keeps the file it sends here
        if isinstance(response, web.FileResponse) and path is not None:
            try:
                same = Path(path).resolve() == self.index.resolve()
            except OSError:
                same = True
            if same:
                self.audit(request.remote, "refused", "the app page through a static route")
                return _html(no_access_page(), 403)
        return response


def front_door(pages: Pages, websocket) -> Callable[[web.Request, Callable[[web.Request], Awaitable]], Awaitable]:
    """The aiohttp middleware: the WebSocket guard's answer, else the app page's, else the route's (checked)."""

    @web.middleware
    async def door(request: web.Request, handler):
        response = await websocket.answer(request)
        if response is None:
            response = await pages.answer(request)
        if response is None:
            response = pages.checked(request, await handler(request))
        return response

    return door
