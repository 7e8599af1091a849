"""Capped reassembly of wslink's chunked messages: nothing held before login, uploads refused at their first chunk.

wslink (2.6) splits every message into chunks of ``id, offset, total size`` (three little-endian uint32) + content
and reassembles them with ``wslink.chunking.UnChunker``, which allocates the declared total size at the first
chunk (512 bytes a message before login, 4 GiB after it) and keeps any number of messages open. A client without
the secret could open a million tiny messages; a logged-in one could make the server reserve 4 GiB with 13 bytes.

:class:`CappedUnChunker` is a drop-in replacement (same ``process_chunk`` / ``set_max_message_size`` /
``release_pending_messages``) with these rules:

- before login: only a message that fits in one chunk of at most :data:`HELLO_BYTES` (the ``wslink.hello``);
- after login: a message may declare at most ``message_limit`` bytes (``--max-upload-mb`` + a small overhead),
  checked at its first chunk; its chunks must come in order and never past the declared size;
- bytes are held as they arrive (never reserved ahead), and every open message's declared size counts against the
  connection's limit and against a :class:`ByteBudget` shared by all connections; a finished or refused message,
  or a closed connection, gives its bytes back.

A broken rule raises :class:`ChunkRefused`; the caller closes the connection with its ``code``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

HEADER_BYTES = 12  # id, offset, total size: three little-endian uint32
HELLO_BYTES = 8 * 1024  # the wslink.hello is about 100 bytes
MESSAGE_OVERHEAD = 64 * 1024  # what a state update adds to an upload's bytes (names, keys, msgpack framing)
MAX_OPEN_MESSAGES = 4  # the browser sends one message's chunks in one go; a few open at once are plenty
CLOSE_POLICY = 1008  # WebSocket close codes (RFC 6455)
CLOSE_TOO_BIG = 1009
CLOSE_TRY_LATER = 1013


class ChunkRefused(ValueError):
    """A chunk broke a rule: the connection is closed with ``code`` (``str(self)`` says why, without data)."""

    def __init__(self, reason: str, code: int = CLOSE_POLICY) -> None:
        super().__init__(reason)
        self.code = code


class ByteBudget:
    """Bytes that all connections together may hold for incomplete messages."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self.held = 0

    def take(self, size: int) -> bool:
        """Count ``size`` more bytes if they fit; False (nothing counted) if not."""
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        """Give back bytes counted by :meth:`take`."""
        self.held = max(0, self.held - size)


@dataclass
class _OpenMessage:
    total: int
    received: int = 0
    parts: list[bytes] = field(default_factory=list)


def decode_header(chunk: bytes) -> tuple[int, int, int]:
    """``(id, offset, total size)`` of a wslink chunk."""
    return (int.from_bytes(chunk[0:4], "little"), int.from_bytes(chunk[4:8], "little"),
            int.from_bytes(chunk[8:12], "little"))


def unpack(data: bytes | bytearray | memoryview) -> Any:
    """A whole message, decoded (msgpack); ``ChunkRefused`` if it is not one."""
    try:
        return msgpack.unpackb(data)
    except Exception:  # msgpack raises ValueError, its own errors, UnicodeDecodeError, …
        raise ChunkRefused("a message that is not msgpack") from None


class CappedUnChunker:
    """wslink's chunk reassembly for one connection, with the limits of this module (see its docstring)."""

    def __init__(self, budget: ByteBudget, message_limit: int, hello_limit: int = HELLO_BYTES) -> None:
        self.budget = budget
        self.message_limit = int(message_limit)
        self.limit = int(hello_limit)
        self.logged_in = False
        self.open: dict[int, _OpenMessage] = {}

    @property
    def held(self) -> int:
        """Declared bytes of the messages open now (what this connection counts against the budget)."""
        return sum(message.total for message in self.open.values())

    def set_max_message_size(self, _size: int) -> None:
        """wslink calls this when the client's hello was accepted (with 4 GiB): the login limit applies instead."""
        self.logged_in = True
        self.limit = self.message_limit

    def release_pending_messages(self) -> None:
        """Drop every open message and give its bytes back (the connection ends)."""
        for message in self.open.values():
            self.budget.give(message.total)
            message.parts.clear()
        self.open.clear()

    def process_chunk(self, chunk: bytes) -> Any | None:
        """The decoded message once ``chunk`` completes it, else None; ``ChunkRefused`` when a rule is broken."""
        if len(chunk) < HEADER_BYTES:
            raise ChunkRefused("a chunk shorter than its header")
        message_id, offset, total = decode_header(chunk)
        content = memoryview(chunk)[HEADER_BYTES:]
        if not self.logged_in:
            if offset != 0 or total != len(content) or total > self.limit:
                raise ChunkRefused("before login only the hello, in one chunk, is accepted")
            return unpack(content)
        message = self.open.get(message_id)
        if message is None:
            return self._first_chunk(message_id, offset, total, content)
        if total != message.total or offset != message.received or offset + len(content) > total:
            self._drop(message_id)
            raise ChunkRefused("a chunk out of order or past its message's declared size")
        message.parts.append(bytes(content))
        message.received += len(content)
        if message.received < total:
            return None
        self._drop(message_id)
        data = b"".join(message.parts)
        message.parts.clear()
        return unpack(data)

    def _first_chunk(self, message_id: int, offset: int, total: int, content: memoryview) -> Any | None:
        if total > self.limit:
            raise ChunkRefused(f"a message of {total} bytes is over the limit of {self.limit} bytes", CLOSE_TOO_BIG)
        if offset != 0 or len(content) > total:
            raise ChunkRefused("a message that does not start at its first byte")
        if len(content) == total:
            return unpack(content)  # one chunk: nothing to hold
        if len(self.open) >= MAX_OPEN_MESSAGES or self.held + total > self.limit:
            raise ChunkRefused("too many bytes in incomplete messages on this connection", CLOSE_TOO_BIG)
        if not self.budget.take(total):
            raise ChunkRefused("the server holds too many incomplete messages; try again later", CLOSE_TRY_LATER)
        self.open[message_id] = _OpenMessage(total, len(content), [bytes(content)])
        return None

    def _drop(self, message_id: int) -> None:
        message = self.open.pop(message_id, None)
        if message is not None:
            self.budget.give(message.total)
