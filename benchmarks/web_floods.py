"""Server memory of ``drdm web`` under the two floods of issue 27: a chunk flood before login and an upload declared
far over ``--max-upload-mb``.

    python benchmarks/web_floods.py [--frames 1000000] [--declared-gib 1] [--source DIR --label NAME]

Starts ``drdm web --max-upload-mb 5`` and reads the server process's resident memory (``VmRSS``) before and after:

1. **pre-login flood**: ``--frames`` WebSocket frames of 13 bytes, each a wslink chunk header with a new message id
   (512 bytes declared) and one byte, from a client without the secret; then the same from a client holding a
   session credential but before its hello (where the server hands out credentials);
2. **oversized declaration**: a logged-in client declares a ``--declared-gib`` GiB message in 13-byte frames (2000
   of them; the first one declares it).

``--source DIR`` runs the server from another checkout (its ``drdm_web`` and ``DRDMSlicer/drdm`` come first on the
server's ``PYTHONPATH``), e.g. the code before the fix: ``mkdir /tmp/before && git archive 5962f77 drdm_web
DRDMSlicer | tar -x -C /tmp/before``. Each run replaces its ``--label``'s row in
``benchmarks/results/web_floods.json`` and rewrites ``web_floods.md`` from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "Testing" / "web"))  # browser (selenium helpers) and raw_client live beside the web tests


async def flood(ws: aiohttp.ClientWebSocketResponse, frames: int, chunk_header) -> tuple[int, int | None]:
    """Send up to ``frames`` chunk headers with new ids; returns (frames sent before an error, close code or None)."""
    sent = 0
    for index in range(frames):
        try:
            await ws.send_bytes(chunk_header(index + 1, 0, 512) + b"x")
        except (ConnectionError, RuntimeError):
            break
        sent += 1
    try:
        message = await ws.receive(timeout=30)
        closed = ws.close_code if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) else None
    except asyncio.TimeoutError:
        closed = None
    return sent, closed


async def pre_login(url: str, pid: int, frames: int) -> dict:
    from raw_client import Client, chunk_header, rss_mb

    row = {"rss_before_mb": rss_mb(pid)}
    started = time.monotonic()
    async with Client(url.split("?")[0]) as client:  # no secret
        try:
            await client.connect()
            _, row["no_secret_close_code"] = await flood(client.ws, frames, chunk_header)
        except aiohttp.WSServerHandshakeError as error:
            row["no_secret_close_code"] = f"handshake refused ({error.status})"
    await asyncio.sleep(2)
    row["rss_after_no_secret_mb"] = rss_mb(pid)
    async with Client(url) as client:  # the link's credential (if any), no hello
        response = await client.exchange()
        row["credential"] = bool(response.cookies)
        if response.cookies:
            await client.connect()
            _, row["credential_close_code"] = await flood(client.ws, frames, chunk_header)
    await asyncio.sleep(2)
    row["rss_after_mb"] = rss_mb(pid)
    row["seconds"] = time.monotonic() - started
    return row


async def declared(url: str, pid: int, gib: float) -> dict:
    from raw_client import Client, chunk_header, rss_mb

    async with Client(url) as client:
        hello = await client.login()
        row = {"logged_in": "result" in hello, "rss_before_mb": rss_mb(pid)}
        total = int(gib * 1024**3)
        sent, row["close_code"] = 0, None
        for offset in range(2000):
            try:
                await client.ws.send_bytes(chunk_header(7, offset, min(total, 2**32 - 1)) + b"x")
            except (ConnectionError, RuntimeError):
                break
            sent += 1
        try:
            message = await client.ws.receive(timeout=30)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                row["close_code"] = client.ws.close_code
        except asyncio.TimeoutError:
            pass
        await asyncio.sleep(2)
        row["rss_after_mb"] = rss_mb(pid)
        row["frames_sent"] = sent
    return row


def run_server(folder: Path, source: Path | None) -> tuple[subprocess.Popen, str]:
    from browser import free_port, printed_url, wait_for_raising

    volume = folder / "data" / "stack.nii.gz"
    volume.parent.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 32, 32), np.int16)), str(volume))
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(source), str(source / "DRDMSlicer"), env.get("PYTHONPATH", "")])
    port = free_port()
    log = folder / "server.log"
    process = subprocess.Popen([sys.executable, "-m", "drdm", "web", str(volume), "--device", "cpu", "--max-upload-mb",
                                "5", "--export-dir", str(folder / "exports"), "--port", str(port)],
                               stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=folder)

    def ready() -> str | None:
        if process.poll() is not None:
            raise RuntimeError(f"drdm web exited: {log.read_text()[-2000:]}")
        return printed_url(log.read_text(errors="replace"))

    url = wait_for_raising(ready, 240, "drdm web to start")
    time.sleep(3)  # listening shortly after printing
    return process, url


def write_results(label: str, row: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "web_floods.json"
    rows = json.loads(path.read_text()) if path.exists() else {}
    rows[label] = row
    path.write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["# drdm web: server memory under the floods of issue 27", "",
             "`python benchmarks/web_floods.py --frames F --declared-gib G [--source DIR --label NAME]` (CPU, "
             "`--max-upload-mb 5`); RSS of the server process (`VmRSS`), MB.", "",
             "| server | pre-login flood: frames | RSS before → after | closed | declared upload | RSS before → "
             "after | closed |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        p, d = r["pre_login"], r["declared"]
        closed = f"no secret: {p.get('no_secret_close_code')}; credential, no hello: {p.get('credential_close_code', '—')}"
        lines.append(f"| {name} | {r['frames']:,} × 13 B | {p['rss_before_mb']:.0f} → {p['rss_after_mb']:.0f} | "
                     f"{closed} | {r['declared_gib']:g} GiB in 13-byte frames | {d['rss_before_mb']:.0f} → "
                     f"{d['rss_after_mb']:.0f} | {d['close_code']} |")
    lines += ["", "Close codes: 1008 policy violation (anything but the hello before login), 1009 message too big "
              "(over `--max-upload-mb` at its first chunk), 1006 the server closed the connection while the client was "
              "still sending (its close frame was not read); None: the connection stayed open. "
              f"Machine: {platform.machine()}, {os.cpu_count()} CPUs.", ""]
    (RESULTS / "web_floods.md").write_text("\n".join(lines), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--declared-gib", type=float, default=1.0)
    parser.add_argument("--source", type=Path, help="run the server from this checkout (the 'before')")
    parser.add_argument("--label", help="the row's name (default: the current commit, or 'source' with --source)")
    args = parser.parse_args()
    label = args.label or ("source" if args.source else subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
        cwd=Path(__file__).resolve().parent).stdout.strip() or "current")
    folder = Path(tempfile.mkdtemp(prefix="drdm-web-floods-"))
    process, url = run_server(folder, args.source)
    try:
        pre = asyncio.run(pre_login(url, process.pid, args.frames))
        big = asyncio.run(declared(url, process.pid, args.declared_gib))
    finally:
        process.terminate()
        process.wait(30)
    row = {"frames": args.frames, "declared_gib": args.declared_gib, "pre_login": pre, "declared": big}
    write_results(label, row)
    print(json.dumps({label: row}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
