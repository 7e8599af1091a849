"""drdm web's protections as plain logic (no server, no browser): confined paths, uploads, the secret, the
one-browser gate."""

from __future__ import annotations

import os
import stat
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "DRDMSlicer"))
from drdm.physical.io import InputError  # noqa: E402

from drdm_web.access import check_bind, is_loopback, page_url, random_secret, read_secret_file  # noqa: E402
from drdm_web.files import DataFolder, UploadFolder, safe_name  # noqa: E402


@pytest.fixture
def folders(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "sub").mkdir(parents=True)
    outside.mkdir()
    (data / "sub" / "a.nii.gz").write_bytes(b"a")
    (outside / "b.nii.gz").write_bytes(b"b")
    (data / "inner-link.nii.gz").symlink_to(data / "sub" / "a.nii.gz")
    (data / "out-link.nii.gz").symlink_to(outside / "b.nii.gz")
    (data / "out-dir").symlink_to(outside)
    return DataFolder(data), data, outside


def test_paths_inside_the_data_folder_resolve(folders):
    folder, data, _ = folders
    assert folder.resolve("sub/a.nii.gz") == data.resolve() / "sub" / "a.nii.gz"
    assert folder.resolve(str(data / "sub" / "a.nii.gz")) == data.resolve() / "sub" / "a.nii.gz"  # absolute, inside
    assert folder.resolve("inner-link.nii.gz") == data.resolve() / "sub" / "a.nii.gz"  # a link that stays inside


@pytest.mark.parametrize("typed, reason", [
    ("{outside}/b.nii.gz", "outside the data folder"),
    ("/etc/passwd", "outside the data folder"),
    ("../outside/b.nii.gz", "'..' is not allowed"),
    ("sub/../sub/a.nii.gz", "'..' is not allowed"),
    ("out-link.nii.gz", "symbolic link that leads outside"),
    ("out-dir/b.nii.gz", "symbolic link that leads outside"),
    ("  ", "enter a path"),
])
def test_paths_leading_out_are_refused_with_one_line(folders, typed, reason):
    folder, _, outside = folders
    with pytest.raises(InputError) as error:
        folder.resolve(typed.format(outside=outside))
    assert reason in str(error.value) and "\n" not in str(error.value)


def test_upload_folder_is_owner_only_checks_the_limit_and_is_removed(tmp_path):
    uploads = UploadFolder(max_mb=1)
    try:
        assert stat.S_IMODE(os.stat(uploads.path).st_mode) == 0o700
        written = uploads.write("../../evil name.nii.gz", b"x" * 100, "volume")
        assert written.parent == uploads.path and written.name == "volume-evil_name.nii.gz"
        assert stat.S_IMODE(os.stat(written).st_mode) == 0o600
        with pytest.raises(InputError, match=r"big.nii.gz: 2.0 MB is over the upload limit of 1 MB \(--max-upload-mb\)"):
            uploads.write("big.nii.gz", b"x" * (2 * 1024 * 1024), "volume")
        uploads.clear()
        assert list(uploads.path.iterdir()) == []
    finally:
        uploads.remove()
    assert not uploads.path.exists()
    with pytest.raises(InputError, match="--max-upload-mb"):
        UploadFolder(max_mb=5000)


def test_safe_names():
    assert safe_name("..") == "upload" and safe_name(".hidden") == "hidden" and safe_name("a\\b\\c.nrrd") == "c.nrrd"


def test_secret_random_or_from_a_file(tmp_path):
    assert random_secret() != random_secret() and len(random_secret()) >= 32
    key = tmp_path / "key"
    key.write_text("s3cret-s3cret-s3cret\nignored\n")
    key.chmod(0o600)
    assert read_secret_file(key) == "s3cret-s3cret-s3cret"
    key.write_text("\n")
    with pytest.raises(InputError, match="empty"):
        read_secret_file(key)
    key.write_text("short")
    with pytest.raises(InputError, match="too short"):
        read_secret_file(key)
    with pytest.raises(InputError, match="cannot be read"):
        read_secret_file(tmp_path / "missing")


def test_network_host_needs_a_secret_and_the_url_carries_it():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    with pytest.raises(InputError, match="needs an access secret"):
        check_bind("0.0.0.0", "")
    check_bind("127.0.0.1", "")  # loopback: allowed (drdm web always has one anyway)
    check_bind("0.0.0.0", "k" * 32)
    assert page_url("127.0.0.1", 8080, "a/b+c") == "http://127.0.0.1:8080/?secret=a%2Fb%2Bc"


def test_gate_one_browser_idle_and_same_browser():
    pytest.importorskip("wslink")
    from drdm_web.session import SessionGate

    now = [0.0]
    gate = SessionGate(idle_minutes=10, clock=lambda: now[0])
    assert gate.claim("c1", "alice") == (True, False)  # the first browser: nothing to empty
    assert not gate.admits_page("bob") and gate.admits_page("alice")
    assert gate.claim("c2", "bob") == (False, False)  # in use
    now[0] = 9 * 60
    gate.seen("c1")
    now[0] = 18 * 60
    assert gate.claim("c2", "bob") == (False, False)  # active 9 minutes ago
    now[0] = 19 * 60 + 1
    assert gate.admits_page("bob") and gate.claim("c2", "bob") == (True, True)  # idle: bob takes it, new person
    assert not gate.release("c1") and gate.owner == "c2"  # the old holder's close changes nothing
    assert gate.release("c2") and gate.admits_page("carol")
    assert gate.claim("c3", "bob") == (True, False)  # bob again (a reload): his work stays
