"""drdm web's front door as plain logic (no server): capped chunk reassembly, the spellings of the app page, the
access log."""

from __future__ import annotations

import io
import re

import msgpack
import pytest

pytest.importorskip("wslink", reason="the web extra is not installed (pip install -e '.[web]')")
from aiohttp.test_utils import make_mocked_request  # noqa: E402
from raw_client import chunk_header, hello, rpc  # noqa: E402

from drdm_web.audit import AccessLog  # noqa: E402
from drdm_web.chunks import CLOSE_TOO_BIG, HELLO_BYTES, ByteBudget, CappedUnChunker, ChunkRefused  # noqa: E402
from drdm_web.pages import is_app_page  # noqa: E402

MB = 1024 * 1024


def chunks_of(message: bytes, size: int, message_id: int = 7) -> list[bytes]:
    return [chunk_header(message_id, offset, len(message)) + message[offset:offset + size]
            for offset in range(0, len(message), size)]


def test_before_login_only_a_one_chunk_hello_is_accepted():
    budget = ByteBudget(10 * MB)
    unchunker = CappedUnChunker(budget, 5 * MB)
    assert unchunker.process_chunk(chunks_of(hello(), 4096)[0])["method"] == "wslink.hello"
    for chunk in (chunk_header(1, 0, 512) + b"x",  # the flood of item 1: a new message id per 13-byte frame
                  chunks_of(b"x" * (HELLO_BYTES + 1), MB)[0],  # a one-chunk message over the hello's size
                  b"short"):
        with pytest.raises(ChunkRefused):
            CappedUnChunker(budget, 5 * MB).process_chunk(chunk)
    assert budget.held == 0


def test_after_login_a_message_over_the_limit_is_refused_at_its_first_chunk():
    budget = ByteBudget(10 * MB)
    unchunker = CappedUnChunker(budget, 5 * MB)
    unchunker.set_max_message_size(4 * 1024**3)  # what wslink passes when the hello is accepted
    with pytest.raises(ChunkRefused) as refused:  # item 3: 1 GiB declared in a 13-byte frame
        unchunker.process_chunk(chunk_header(7, 0, 1024**3) + b"x")
    assert refused.value.code == CLOSE_TOO_BIG and unchunker.held == 0 and budget.held == 0
    message = rpc("trame.state.update", [[{"key": "drdm_upload", "value": b"v" * (3 * MB)}]])
    parts = chunks_of(message, MB)
    assert [unchunker.process_chunk(part) for part in parts[:-1]] == [None] * (len(parts) - 1)
    assert budget.held == len(message)  # counted while open, held as the bytes arrive
    assert unchunker.process_chunk(parts[-1])["args"][0][0]["value"] == b"v" * (3 * MB)
    assert budget.held == 0


def test_chunks_out_of_order_or_past_the_declared_size_are_refused_and_released():
    budget = ByteBudget(10 * MB)
    unchunker = CappedUnChunker(budget, 5 * MB)
    unchunker.set_max_message_size(0)
    unchunker.process_chunk(chunk_header(1, 0, 1000) + b"a" * 10)
    with pytest.raises(ChunkRefused, match="out of order"):
        unchunker.process_chunk(chunk_header(1, 500, 1000) + b"a" * 10)
    unchunker.process_chunk(chunk_header(2, 0, 20) + b"a" * 10)
    with pytest.raises(ChunkRefused, match="past its message's declared size"):
        unchunker.process_chunk(chunk_header(2, 10, 20) + b"a" * 11)
    assert budget.held == 0
    unchunker.process_chunk(chunk_header(3, 0, 1000) + b"a")
    unchunker.release_pending_messages()  # the connection ends
    assert budget.held == 0


def test_the_process_wide_budget_bounds_all_connections_together():
    budget = ByteBudget(6 * MB)
    first, second = CappedUnChunker(budget, 5 * MB), CappedUnChunker(budget, 5 * MB)
    for unchunker in (first, second):
        unchunker.set_max_message_size(0)
    first.process_chunk(chunk_header(1, 0, 4 * MB) + b"x")
    with pytest.raises(ChunkRefused, match="try again later"):
        second.process_chunk(chunk_header(1, 0, 4 * MB) + b"x")
    with pytest.raises(ChunkRefused, match="on this connection"):  # and each connection its own limit
        first.process_chunk(chunk_header(2, 0, 2 * MB) + b"x")
    first.release_pending_messages()
    second.process_chunk(chunk_header(1, 0, 4 * MB) + b"x")
    assert budget.held == 4 * MB


def test_a_whole_message_that_is_not_msgpack_is_refused():
    unchunker = CappedUnChunker(ByteBudget(MB), MB)
    with pytest.raises(ChunkRefused, match="not msgpack"):
        unchunker.process_chunk(chunk_header(1, 0, 3) + b"\xc1\xc1\xc1")
    assert msgpack.unpackb(hello())["id"] == "system:c0:0"


@pytest.mark.parametrize("path", ["/", "/index.html", "/./index.html", "/index.html/", "/%2e/index.html",
                                  "/index.html%2f", "//index.html", "/%69ndex.html", "/a/../index.html",
                                  "/%252e/index.html", "/.%2findex.html", "/INDEX.HTML", "/index.html?x=1",
                                  "/%5cindex.html"])
def test_every_spelling_of_the_app_page_is_the_app_page(path):
    assert is_app_page(make_mocked_request("GET", path))


@pytest.mark.parametrize("path", ["/ws", "/assets/index.js", "/index.htm", "/__trame_vuetify/x.js"])
def test_other_paths_are_not_the_app_page(path):
    assert not is_app_page(make_mocked_request("GET", path))


def test_access_log_lines_and_repeats(tmp_path):
    stream = io.StringIO()
    log = AccessLog(stream=stream)
    log("10.0.0.7", "admitted", "the link's secret was exchanged for a new session credential")
    for _ in range(3):
        log("10.0.0.8", "in use", "another browser holds the session")
    log("10.0.0.7", "ended", "the browser closed its page")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert re.fullmatch(r"drdm web access \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ 10\.0\.0\.7 admitted: the link's secret .*",
                        lines[0])
    assert " 10.0.0.8 in use: " in lines[1] and " ended: " in lines[2]
    with pytest.raises(ValueError):
        log("x", "hacked", "")
    path = tmp_path / "access.log"
    AccessLog(path)("::1", "refused", "wrong secret in the link")
    assert path.read_text().endswith("::1 refused: wrong secret in the link\n") and path.stat().st_mode & 0o077 == 0
