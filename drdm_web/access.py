"""The access secret of ``drdm web``: a random one per start, or ``--secret-file`` (≥ 128 bits, owner-only file).

The secret travels once, in the printed link (``/?secret=KEY``): the server exchanges it for a session credential
(an HttpOnly, SameSite=Strict cookie; see ``pages``) and redirects to ``/``. This module makes the secret, reads
and checks a secret file, checks the bind address and writes the link.
"""

from __future__ import annotations

import ipaddress
import math
import os
import secrets
import socket
import stat
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from drdm.physical.io import InputError

SECRET_BYTES = 32  # 256 random bits, URL-safe base64 (43 characters)
MIN_SECRET_BITS = 128
LOOPBACK_NAMES = ("localhost",)
MAKE_ONE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def random_secret() -> str:
    """A fresh random key (``secrets.token_urlsafe``, 256 bits)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def _alphabet_bits(secret: str) -> float:
    """Bits per character of the character classes ``secret`` uses (hex digits alone count as 16 symbols)."""
    if all(c in "0123456789abcdef" for c in secret) or all(c in "0123456789ABCDEF" for c in secret):
        return 4.0
    size = 0
    size += 26 if any(c.islower() and c.isascii() for c in secret) else 0
    size += 26 if any(c.isupper() and c.isascii() for c in secret) else 0
    size += 10 if any(c.isdigit() and c.isascii() for c in secret) else 0
    size += 33 if any(c.isascii() and not c.isalnum() for c in secret) else 0
    size += 100 if any(not c.isascii() for c in secret) else 0
    return math.log2(max(size, 2))


def entropy_bits(secret: str) -> float:
    """A conservative estimate of the entropy of ``secret`` in bits.

    The smaller of: (characters that neither repeat the previous one nor continue a run such as ``abc``, ``123``,
    ``cba``) × bits per character of the character classes used, and length × the Shannon entropy of the secret's
    own character frequencies. ``"a" * 16`` → 0; ``secrets.token_urlsafe(32)`` (43 characters) → about 215.
    """
    if not secret:
        return 0.0
    free = 0
    for index, char in enumerate(secret):
        step = ord(char) - ord(secret[index - 1]) if index else None
        previous_step = ord(secret[index - 1]) - ord(secret[index - 2]) if index >= 2 else None
        if step == 0 or (step is not None and abs(step) == 1 and step == previous_step):
            continue
        free += 1
    counts = Counter(secret)
    shannon = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values())
    return max(0.0, min(free * _alphabet_bits(secret), len(secret) * shannon))


def check_strength(secret: str, source: str) -> None:
    """``InputError`` unless ``secret`` has at least :data:`MIN_SECRET_BITS` bits (estimated)."""
    bits = entropy_bits(secret)
    if bits < MIN_SECRET_BITS:
        raise InputError(f"{source}: the secret is too weak (about {bits:.0f} bits; {MIN_SECRET_BITS} or more are "
                         f"needed); make one with: {MAKE_ONE}")


def read_secret_file(path: str | os.PathLike) -> str:
    """The key in ``path`` (first line, stripped), after checking that only its owner can read the file and that
    the key has at least 128 bits of entropy; ``InputError`` (one line) otherwise."""
    path = Path(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as error:
        raise InputError(f"--secret-file {path}: cannot be read ({error.strerror})") from None
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"--secret-file {path}: not a regular file")
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InputError(f"--secret-file {path}: other users can read it (mode {stat.S_IMODE(info.st_mode):04o}); "
                             f"run: chmod 600 {path}")
        raw = file.read(64 * 1024)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"--secret-file {path}: not UTF-8 text") from None
    lines = text.strip().splitlines()
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise InputError(f"--secret-file {path}: the file is empty (write the access secret on its first line)")
    if len(secret) < 16:
        raise InputError(f"--secret-file {path}: the secret is too short ({len(secret)} characters; use 16 or more)")
    check_strength(secret, f"--secret-file {path}")
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
    """Refuse to serve beyond this machine without a strong secret (there is no option to run without one)."""
    if not is_loopback(host):
        if not secret:
            raise InputError(f"--host {host} serves the network: it needs an access secret (--secret-file or the "
                             "random one)")
        check_strength(secret, f"--host {host} serves the network")


def page_url(host: str, port: int, secret: str) -> str:
    """The URL to open: ``http://HOST:PORT/?secret=KEY`` (a wildcard bind address is shown as this host's name)."""
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/?secret={quote(secret, safe='')}"
