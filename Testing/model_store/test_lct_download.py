"""lct-3d: the authors' published 3D lung-CT model as a registry download, pinned to their commit and verified
by its git blob id, converted to the project's format in the cache. The real file is not reachable from these
machines: a local HTTP server serves a randomly initialised checkpoint of the authors' 3D architecture."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import subprocess
import threading

import pytest
import torch
from drdm.model_store import download, loading, offered, registry
from drdm.models import file_digest, untrained_model
from drdm.settings import DeformationSettings  # noqa: E402


@pytest.fixture()
def www(tmp_path):
    """``(url, folder)``: an HTTP server on 127.0.0.1 serving ``folder``."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def stand_in(www):
    """A plain state dict of the authors' 3D RecResACNet (random weights), as their .pth files are, and its URL."""
    url, root = www
    path = root / "000000_lct_recresacnet.pth"
    torch.save(untrained_model(3, seed=5).network.state_dict(), path)
    return url, path


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DRDM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DRDM_MODEL", raising=False)


def with_blob(monkeypatch, blob: str) -> None:
    monkeypatch.setitem(registry.REGISTRY, "lct-3d", dataclasses.replace(registry.REGISTRY["lct-3d"], git_blob=blob))


def test_registry_entry_is_pinned():
    item = registry.entry("lct-3d")
    assert item.available and not item.bundled and item.converted and item.ndims == 3
    assert item.url == ("https://raw.githubusercontent.com/jianqingzheng/def_diff_rec/b7da2aa73bb8acbfed418863fd706d87a1bc4fa9/"
                        "models/lct_recresacnet/000000_lct_recresacnet.pth")
    assert item.git_blob == "6309023cefe116cd55fb8307ad37b38d47448990"


def test_git_blob_id_matches_git(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"DRDM\0" * 1000)
    if subprocess.run(["git", "--version"], capture_output=True).returncode != 0:
        pytest.skip("git is not installed")
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout.strip()
    assert download.git_blob_id(path) == expected


def test_listed_and_offered_as_a_download():
    from drdm.model_store.listing import list_models

    (row,) = [m for m in list_models() if m.name == "lct-3d"]
    assert row.state.startswith("download") and row.source == registry.PUBLISHED_LCT_URL and row.licence == "Apache-2.0"
    (choice,) = [c for c in offered.offered_models() if c.name == "lct-3d"]
    assert choice.download and choice.ndims == 3 and choice.label.startswith("lct-3d (download)")
    with pytest.raises(ValueError, match="drdm models fetch lct-3d"):
        loading.load_model_spec("lct-3d")


def test_fetch_verifies_converts_and_loads(stand_in, monkeypatch, capsys):
    from drdm.cli import main
    from drdm.model_store.files import read_metadata
    from drdm.model_store.listing import list_models

    url, path = stand_in
    with_blob(monkeypatch, download.git_blob_id(path))
    seen = []
    target = download.fetch("lct-3d", progress=lambda done, total: seen.append((done, total)), url=f"{url}/{path.name}")
    assert seen[-1] == (path.stat().st_size, path.stat().st_size)
    assert target == download.cache_folder() / "lct-3d.safetensors" and download.verify("lct-3d")
    assert sorted(p.name for p in download.cache_folder().iterdir()) == ["lct-3d.json", "lct-3d.safetensors"]
    metadata = read_metadata(target)
    assert metadata["source_sha256"] == file_digest(path) and metadata["source_bytes"] == path.stat().st_size
    assert metadata["source_git_blob"] == download.git_blob_id(path)
    model = loading.load_model_spec("lct-3d")
    process = model.forward_process()
    assert (model.name, model.ndims, model.size, model.num_steps) == ("lct-3d", 3, 128, 80)
    assert (process.first_level, process.composition_padding, process.image_interpolation) == (64, "border", "linear")
    state = torch.load(path, weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in model.network.state_dict().items())
    (row,) = [m for m in list_models() if m.name == "lct-3d"]
    assert row.state.startswith("cached (") and "MB download" in row.state
    (choice,) = [c for c in offered.offered_models() if c.name == "lct-3d"]
    assert not choice.download and choice.ndims == 3
    assert main(["models", "verify", "lct-3d"]) == 0


def test_converted_model_deforms_a_volume(stand_in, monkeypatch):
    """The converted 3D checkpoint used on a volume (working grid reduced to 16³ to keep the test short)."""
    import numpy as np
    import SimpleITK as sitk
    from drdm.physical.deform import deform_image

    url, path = stand_in
    with_blob(monkeypatch, download.git_blob_id(path))
    download.fetch("lct-3d", url=f"{url}/{path.name}")
    model = loading.load_model_spec("lct-3d")
    model.size = 16
    torch.nn.init.zeros_(model.network.conv_out.weight)  # random weights would move everything away
    torch.nn.init.zeros_(model.network.conv_out.bias)
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((12, 14, 16)).astype(np.float32))
    image.SetSpacing((1.0, 1.1, 1.3))
    result = deform_image(model, image, settings=DeformationSettings(level=64, seed=0, speed="faster"))
    assert result.statistics["model"] == "lct-3d" and result.statistics["folding_fraction"] == 0.0
    assert float(result.ddf.abs().max()) > 0


@pytest.mark.parametrize("case", ["real entry", "truncated", "2D network"])
def test_wrong_files_are_refused_and_nothing_is_left(case, stand_in, www, monkeypatch):
    url, path = stand_in
    name = path.name
    if case == "truncated":
        (www[1] / "short.pth").write_bytes(path.read_bytes()[:-1000])
        name = "short.pth"
        with_blob(monkeypatch, download.git_blob_id(path))
    elif case == "2D network":
        torch.save(untrained_model(2, seed=1).network.state_dict(), www[1] / "flat.pth")
        name = "flat.pth"
        with_blob(monkeypatch, download.git_blob_id(www[1] / "flat.pth"))
    message = "2D network" if case == "2D network" else "wrong, truncated or tampered"
    with pytest.raises(registry.RegistryError, match=message):
        download.fetch("lct-3d", url=f"{url}/{name}")
    assert not download.cache_folder().exists() or list(download.cache_folder().iterdir()) == []
    assert not download.verify("lct-3d")


def test_cancelled_download_leaves_nothing(stand_in, monkeypatch):
    url, path = stand_in
    with_blob(monkeypatch, download.git_blob_id(path))
    with pytest.raises(download.DownloadCancelled, match="cancelled"):
        download.fetch("lct-3d", url=f"{url}/{path.name}", cancel=lambda: True)
    assert list(download.cache_folder().iterdir()) == []


def test_cli_refuses_a_wrong_file_in_one_line(stand_in, capsys):
    from drdm.cli import main

    url, path = stand_in
    assert main(["models", "fetch", "lct-3d", "--url", f"{url}/{path.name}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("drdm: error: download of 'lct-3d' is wrong, truncated or tampered with")
    assert list(download.cache_folder().iterdir()) == []
