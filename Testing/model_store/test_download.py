"""drdm.model_store.download: verified downloads from a local HTTP server (a good and a tampered file), cache reuse; the
choices offered to the front ends."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading

import pytest
from drdm.model_store import download, registry


@pytest.fixture()
def server(tmp_path, checkpoint_path):
    """Serve the published checkpoint and a tampered copy on 127.0.0.1."""
    root = tmp_path / "www"
    root.mkdir()
    shutil.copy(checkpoint_path, root / "good.pth")
    tampered = bytearray(checkpoint_path.read_bytes())
    tampered[-100] ^= 0xFF
    (root / "tampered.pth").write_bytes(bytes(tampered))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *args: None
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def downloadable(monkeypatch, checkpoint_path):
    """A downloadable registry entry (the published checkpoint under another name): every registry model
    this project names is bundled or built in, but the download machinery stays for models too large to ship."""
    monkeypatch.setitem(registry.REGISTRY, "cmr-download", registry.RegistryEntry(
        name="cmr-download", filename="cmr_recresacnet_2d.pth", url="http://127.0.0.1:9/unused.pth",
        sha256=registry.PUBLISHED_CMR_SHA256, licence="Apache-2.0", description="test entry"))


def test_fetch_verifies_and_caches(server, tmp_path, monkeypatch):
    monkeypatch.setenv("DRDM_HOME", str(tmp_path / "home"))
    seen = []
    path = download.fetch("cmr-download", progress=lambda done, total: seen.append((done, total)), url=f"{server}/good.pth")
    assert path == download.cached_path("cmr-download") and download.verify("cmr-download")
    assert seen[-1][0] == seen[-1][1] == path.stat().st_size
    stamp = path.stat().st_mtime_ns
    assert download.fetch("cmr-download", url=f"{server}/tampered.pth") == path  # cached and valid: not downloaded again
    assert path.stat().st_mtime_ns == stamp
    from drdm.model_store.loading import load_model_spec

    assert load_model_spec("cmr-download").sha256 == registry.entry("cmr-download").sha256


def test_tampered_download_is_deleted(server, tmp_path, monkeypatch):
    monkeypatch.setenv("DRDM_HOME", str(tmp_path / "home"))
    with pytest.raises(registry.RegistryError, match="tampered"):
        download.fetch("cmr-download", url=f"{server}/tampered.pth")
    folder = download.cache_folder()
    assert not download.cached_path("cmr-download").exists() and list(folder.iterdir()) == []


def test_unreachable_and_unavailable(tmp_path, monkeypatch, server):
    monkeypatch.setenv("DRDM_HOME", str(tmp_path / "home"))
    with pytest.raises(registry.RegistryError, match="failed"):
        download.fetch("cmr-download", url=f"{server}/missing.pth")
    monkeypatch.setitem(registry.REGISTRY, "withdrawn", registry.RegistryEntry(
        name="withdrawn", filename="w.pth", url=None, sha256=None, licence="-", description="test entry",
        available=False, note="withdrawn by its authors"))
    with pytest.raises(registry.RegistryError, match="not available: withdrawn by its authors"):
        download.fetch("withdrawn")
    with pytest.raises(registry.RegistryError, match="unknown model"):
        download.fetch("brain-7d")


def test_models_command(server, tmp_path, monkeypatch, capsys):
    from drdm.cli import main

    monkeypatch.setenv("DRDM_HOME", str(tmp_path / "home"))
    assert main(["models", "verify", "cmr-download"]) == 1
    assert main(["models", "fetch", "cmr-download", "--url", f"{server}/tampered.pth"]) == 2
    assert "tampered" in capsys.readouterr().err
    assert main(["models", "fetch", "cmr-download", "--url", f"{server}/good.pth"]) == 0
    assert main(["models", "verify", "cmr-download"]) == 0
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "cmr-download" in listing and "cached" in listing and "lct-3d" in listing and "download (size" in listing
    row = next(line for line in listing.splitlines() if line.startswith("cmr-download "))
    item = registry.entry("cmr-download")
    assert item.sha256[:12] in row.split() and row.endswith(item.url)
