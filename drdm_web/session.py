"""One person at a time: ``drdm web`` shows its scene (the data, the results) to the holder of one credential.

A trame app's state and views are shared by every connected browser, so the app admits one browser session:

- :class:`SessionGate` (plain logic) issues session credentials (one per use of the printed link: an HttpOnly
  cookie, see ``pages``), knows which credential's person the scene belongs to, which WebSocket client holds the
  session now, when it was last active, and whether it went idle (``--idle-minutes``).
- :class:`OneBrowserProtocol` is a wslink link protocol: its ``validateToken`` (wslink's authentication hook, called
  on the ``wslink.hello``) admits a client only if its WebSocket request carried a valid credential **and** the
  session is free or already that credential's. The token in the hello is not used: the credential is.

A different credential taking over a free (or idle) session first gets the scene emptied (the app's
``start_session``) and the previous person's credential stops working; the same credential coming back (a page
reload, a reopened tab) keeps its work.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from wslink.websocket import LinkProtocol

from .audit import AccessLog

log = logging.getLogger("drdm.web")
COOKIE = "drdm_session"
CREDENTIAL_BYTES = 32
MAX_CREDENTIALS = 64  # credentials issued and not yet used or revoked (the oldest go first)


class SessionGate:
    """Who holds the session: at most one WebSocket client (of one credential) at a time."""

    def __init__(self, idle_minutes: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_seconds = 60.0 * float(idle_minutes)
        self.clock = clock
        self.owner: str | None = None  # WebSocket client id
        self.owner_credential: str | None = None  # the person whose scene it is (current or last session)
        self.claimed = False  # whether any browser held the session yet
        self.last_seen = clock()
        self.person = 0  # bumped when a different person takes the session: work started for the earlier one is dropped
        self._credentials: dict[str, float] = {}  # valid credentials -> when issued

    def issue(self) -> str:
        """A new credential (the printed link was opened): valid until a different person takes the session."""
        credential = secrets.token_urlsafe(CREDENTIAL_BYTES)
        self._credentials[credential] = self.clock()
        while len(self._credentials) > MAX_CREDENTIALS:
            oldest = min((c for c in self._credentials if c != self.owner_credential), key=self._credentials.get)
            del self._credentials[oldest]
        return credential

    def valid(self, credential: str | None) -> bool:
        """Whether ``credential`` was issued and not revoked."""
        return isinstance(credential, str) and credential in self._credentials

    def idle(self) -> bool:
        """True when the holder sent nothing for ``--idle-minutes`` (never when 0)."""
        return self.owner is not None and self.idle_seconds > 0 and self.clock() - self.last_seen >= self.idle_seconds

    def admits_page(self, credential: str | None) -> bool:
        """Whether a page load with ``credential`` gets the app (valid, and the session free, idle or its own)."""
        return self.valid(credential) and (self.owner is None or self.idle() or credential == self.owner_credential)

    def claim(self, client_id: str, credential: str | None) -> tuple[bool, bool]:
        """Try to give the session to ``client_id`` (of ``credential``): returns ``(admitted, new_person)``;
        ``new_person`` means the scene must be emptied first (never for the first one, which finds only what the
        server was started with). A new person's predecessor's credential is revoked with its scene."""
        if not self.admits_page(credential):
            return False, False
        new_person = self.claimed and credential != self.owner_credential
        if new_person:
            self.person += 1
            if self.owner_credential is not None:
                self._credentials.pop(self.owner_credential, None)
        self.owner, self.owner_credential, self.last_seen, self.claimed = client_id, credential, self.clock(), True
        return True, new_person

    def same_person(self) -> Callable[[], bool]:
        """A check that holds while the session stays with the person it is with now (for work that outlives a
        click: a generation, a download)."""
        person = self.person
        return lambda: self.person == person

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
    """wslink's authentication hook: a valid session credential, then the one-browser gate.

    ``on_claim(new_person)`` runs before a client is admitted (the app empties the scene for a new person);
    ``close_client(client_id)`` ends a WebSocket (an idle holder's, or the same browser's older page);
    ``on_release()``, if given, when the holder disconnects (its work stays until a different person comes).
    """

    def __init__(self, gate: SessionGate, on_claim: Callable[[bool], None], close_client: Callable[[str], Awaitable[None]],
                 audit: AccessLog, on_release: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.gate, self.audit = gate, audit
        self.on_claim, self.on_release, self.close_client = on_claim, on_release, close_client
        self._clients: dict[str, tuple[str | None, str | None]] = {}  # client id -> (credential, source address)

    def onConnect(self, request, client_id):  # noqa: N802 (wslink's name)
        cookies = getattr(request, "cookies", None) or {}
        self._clients[client_id] = (cookies.get(COOKIE), getattr(request, "remote", None))

    async def validateToken(self, token, client_id):  # noqa: N802 (wslink's name)
        """Admit ``client_id`` if its WebSocket request carried a valid credential and the session is free (or
        its own); ``token`` (the hello's secret) is not used."""
        credential, address = self._clients.get(client_id, (None, None))
        if not self.gate.valid(credential):
            self.audit(address, "refused", "WebSocket hello without a valid session credential")
            return False
        previous = self.gate.owner
        idle = self.gate.idle()
        admitted, new_person = self.gate.claim(client_id, credential)
        if not admitted:
            self.audit(address, "in use", "another browser holds the session")
            return False
        if previous is not None and previous != client_id:  # an idle holder, or this credential's older page
            self.audit(address, "ended", "the previous page gave way (" + ("idle" if idle else "same browser") + ")")
            await self.close_client(previous)
        self.on_claim(new_person)
        self.audit(address, "admitted", "session given to a new person (empty scene)" if new_person
                   else "session given to this credential's browser")
        return True

    def onClose(self, client_id):  # noqa: N802 (wslink's name)
        _, address = self._clients.pop(client_id, (None, None))
        if self.gate.release(client_id):
            self.audit(address, "ended", "the browser closed its page")
            if self.on_release is not None:
                self.on_release()
