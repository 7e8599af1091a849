"""The access secret of ``drdm web``: a random one per start (or ``--secret-file``), handed to wslink's own check.

wslink (under trame-server) refuses every WebSocket client whose ``wslink.hello`` does not carry the configured
key (``--authKey``; its default is the public string ``wslink-secret``), and sends unauthenticated clients no
state, no images and no RPC results. The trame page reads the key from the ``secret`` query parameter of its URL
and removes it from the address bar. This module makes the key, checks the bind address and writes the URL.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import stat
import sys
from pathlib import Path
from urllib.parse import quote

from drdm.physical.io import InputError

SECRET_BYTES = 24  # 192 random bits, URL-safe base64 (32 characters)
LOOPBACK_NAMES = ("localhost",)


def random_secret() -> str:
    """A fresh random key (``secrets.token_urlsafe``)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def read_secret_file(path: str | os.PathLike) -> str:
    """The key in ``path`` (first line, stripped); a clear error if it is missing or empty.

    A file that other users can read is accepted with a warning on stderr (they could read the key too).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"--secret-file {path}: cannot be read ({getattr(error, 'strerror', None) or error})") from None
    lines = text.strip().splitlines()
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise InputError(f"--secret-file {path}: the file is empty (write the access secret on its first line)")
    if len(secret) < 16:
        raise InputError(f"--secret-file {path}: the secret is too short ({len(secret)} characters; use 16 or more)")
    if path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        print(f"drdm web: warning: {path} is readable by other users (chmod 600 {path})", file=sys.stderr, flush=True)
    return secret


def is_loopback(host: str) -> bool:
    """True for addresses that only this machine can reach (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host.strip().lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, secret: str) -> None:
    """Refuse to serve beyond this machine without a secret (there is no option to run without one)."""
    if not is_loopback(host) and not secret:
        raise InputError(f"--host {host} serves the network: it needs an access secret (--secret-file or the random one)")


def page_url(host: str, port: int, secret: str) -> str:
    """The URL to open: ``http://HOST:PORT/?secret=KEY`` (a wildcard bind address is shown as this host's name)."""
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/?secret={quote(secret, safe='')}"
