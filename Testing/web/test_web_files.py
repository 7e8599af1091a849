"""drdm web's protections as plain logic (no server, no browser): confined paths read from private copies, uploads
and their leftovers, exports, the secret, the one-browser gate."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "DRDMSlicer"))
from drdm.physical.io import InputError  # noqa: E402

from drdm_web.access import check_bind, entropy_bits, is_loopback, page_url, random_secret, read_secret_file  # noqa: E402
from drdm_web.files import DataFolder, safe_name, shown_text  # noqa: E402
from drdm_web.uploads import UploadFolder  # noqa: E402

STRONG = "Zq8vK2mW0pXr5tYb9nLc3hJd7fGs1aEu6iOo4kTz"  # 40 characters, about 200 bits (entropy_bits)


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
        assert [p.name for p in uploads.path.iterdir()] == [".lock"]  # the running server's lock stays
    finally:
        uploads.remove()
    assert not uploads.path.exists()
    with pytest.raises(InputError, match="--max-upload-mb"):
        UploadFolder(max_mb=5000)


def test_safe_names():
    assert safe_name("..") == "upload" and safe_name(".hidden") == "hidden" and safe_name("a\\b\\c.nrrd") == "c.nrrd"


def test_secret_random_or_from_a_file(tmp_path):
    assert random_secret() != random_secret() and len(random_secret()) >= 43
    key = tmp_path / "key"
    key.write_text(f"{STRONG}\nignored\n")
    key.chmod(0o600)
    assert read_secret_file(key) == STRONG
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
    check_bind("0.0.0.0", STRONG)
    with pytest.raises(InputError, match="too weak"):
        check_bind("0.0.0.0", "k" * 32)
    assert page_url("127.0.0.1", 8080, "a/b+c") == "http://127.0.0.1:8080/?secret=a%2Fb%2Bc"


def test_gate_one_credential_idle_and_same_browser():
    pytest.importorskip("wslink")
    from drdm_web.session import SessionGate

    now = [0.0]
    gate = SessionGate(idle_minutes=10, clock=lambda: now[0])
    alice, bob = gate.issue(), gate.issue()
    assert alice != bob and gate.valid(alice) and not gate.valid("forged") and not gate.valid(None)
    assert gate.claim("c0", "forged") == (False, False)  # no credential: never admitted
    assert gate.claim("c1", alice) == (True, False)  # the first browser: nothing to empty
    assert not gate.admits_page(bob) and gate.admits_page(alice)
    assert gate.claim("c2", bob) == (False, False)  # in use
    now[0] = 9 * 60
    gate.seen("c1")
    now[0] = 18 * 60
    assert gate.claim("c2", bob) == (False, False)  # active 9 minutes ago
    now[0] = 19 * 60 + 1
    assert gate.admits_page(bob) and gate.claim("c2", bob) == (True, True)  # idle: bob takes it, new person
    assert not gate.valid(alice)  # alice's scene is gone, and so is her credential
    assert not gate.release("c1") and gate.owner == "c2"  # the old holder's close changes nothing
    assert gate.release("c2")
    assert gate.claim("c3", bob) == (True, False)  # bob again (a reload): his work stays
    carol = gate.issue()  # the link opened again (even in bob's browser): a new person
    gate.release("c3")
    assert gate.claim("c4", carol) == (True, True) and not gate.valid(bob)


def test_secret_file_must_be_owner_only_and_strong(tmp_path):
    """Item 10: a group/world-readable secret file is refused (not warned); 16 identical characters are refused
    whatever the address (they are refused for 0.0.0.0 in particular)."""
    key = tmp_path / "key"
    key.write_text(STRONG)
    key.chmod(0o640)
    with pytest.raises(InputError, match=r"other users can read it \(mode 0640\); run: chmod 600"):
        read_secret_file(key)
    key.chmod(0o600)
    assert read_secret_file(key) == STRONG
    for weak in ("a" * 16, "a" * 64, "abcdefghijklmnopqrstuvwxyz0123456789", "0123456789abcdef0123456789abcdef"):
        key.write_text(weak)
        with pytest.raises(InputError, match="too weak"):
            read_secret_file(key)
    assert entropy_bits("a" * 16) == 0 and entropy_bits(random_secret()) >= 180


def test_private_copy_reads_from_the_opened_file(folders, tmp_path):
    folder, data, _ = folders
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with folder.private_copy("inner-link.nii.gz", private) as copy:  # a link that stays inside: allowed
        assert copy.parent == private and copy.read_bytes() == b"a" and stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert list(private.iterdir()) == []  # removed after the block
    (data / "fifo").mkdir()
    os.mkfifo(data / "fifo" / "pipe.nii.gz")
    with pytest.raises(InputError, match="not a file or a folder"):  # opened without blocking, then refused
        with folder.private_copy("fifo/pipe.nii.gz", private):
            pass


def test_private_copy_brings_a_detached_header_s_data_and_refuses_one_elsewhere(folders, tmp_path):
    folder, data, outside = folders
    private = tmp_path / "private"
    private.mkdir()
    (data / "sub" / "v.raw").write_bytes(b"\0" * 8)
    (data / "sub" / "v.mhd").write_text("ObjectType = Image\nNDims = 2\nDimSize = 2 2\nElementType = MET_SHORT\n"
                                        "ElementDataFile = v.raw\n")
    with folder.private_copy("sub/v.mhd", private) as copy:
        assert (copy.parent / "v.raw").read_bytes() == b"\0" * 8
    (data / "sub" / "w.mhd").write_text(f"NDims = 2\nElementDataFile = {outside}/b.nii.gz\n")
    with pytest.raises(InputError, match="voxel data is not a plain file beside it"):
        with folder.private_copy("sub/w.mhd", private):
            pass
    (data / "sub" / "x.raw").symlink_to(outside / "b.nii.gz")
    (data / "sub" / "x.mhd").write_text("NDims = 2\nElementDataFile = x.raw\n")
    with pytest.raises(InputError, match="too many symbolic links"):  # the data file is opened without following
        with folder.private_copy("sub/x.mhd", private):
            pass


def test_a_folder_swapped_for_a_link_after_the_check_is_not_read(folders, tmp_path, monkeypatch):
    """Item 7, the race made certain: the folder is replaced by a link to ``outside`` right after the path check
    (inside ``realpath``); the file is still opened once and its descriptor checked, so nothing outside is read."""
    folder, data, outside = folders
    (outside / "a.nii.gz").write_bytes(b"outside")
    real_realpath = os.path.realpath

    def check_then_swap(path, *args, **kwargs):
        result = real_realpath(path, *args, **kwargs)
        if str(path).endswith("sub/a.nii.gz") and not (data / "sub").is_symlink():
            (data / "sub").rename(data / "sub-before")
            (data / "sub").symlink_to(outside)
        return result

    monkeypatch.setattr(os.path, "realpath", check_then_swap)
    private = tmp_path / "private"
    private.mkdir()
    with pytest.raises(InputError, match="symbolic link that leads outside"):
        with folder.private_copy("sub/a.nii.gz", private) as copy:
            assert copy.read_bytes() != b"outside"
    assert list(private.iterdir()) == []


@pytest.mark.parametrize("typed, reason", [
    ("a" * 300 + ".nii.gz", "a name in the path is longer than 255 bytes"),
    ("x/" * 2100, "the path is too long"),
    ("stack\x00.nii.gz", "control characters"),
    ("line\nbreak.nii.gz", "control characters"),
    ("\udcff.nii.gz", "characters that cannot be used"),
])
def test_unusable_paths_are_one_line(folders, typed, reason):
    folder, _, _ = folders
    with pytest.raises(InputError) as error:
        folder.resolve(typed)
    assert reason in str(error.value) and "\n" not in str(error.value) and len(str(error.value)) < 200


def test_the_export_folder_is_invisible_and_refusals_do_not_tell_what_exists(folders):
    """Item 5: typed paths into the export folder are refused with the same line whether the file is there or
    not; so are paths outside the data folder."""
    folder, data, outside = folders
    (data / "exports" / "a_T10_seed3").mkdir(parents=True)
    (data / "exports" / "a_T10_seed3" / "image.nii.gz").write_bytes(b"exported")
    folder.hide(data / "exports")

    def refusal(typed: str) -> str:
        with pytest.raises(InputError) as error:
            folder.resolve(typed)
        return str(error.value).replace(shown_text(typed), "TYPED")

    assert refusal("exports/a_T10_seed3/image.nii.gz") == refusal("exports/b_T10_seed3/image.nii.gz")
    assert "export folder cannot be opened" in refusal("exports/a_T10_seed3/image.nii.gz")
    assert refusal(f"{data}/exports/a_T10_seed3/image.nii.gz") == refusal(f"{data}/exports/none.nii.gz")
    assert refusal(f"{outside}/b.nii.gz") == refusal(f"{outside}/missing.nii.gz")
    assert refusal("out-dir/b.nii.gz") == refusal("out-dir/missing.nii.gz")


def test_exports_never_overwrite_never_follow_links_and_are_owner_only(tmp_path):
    """Items 6 and 10: a link planted under the name an export will use is left alone (its target too); the export
    takes the next free name; files are 0600, folders 0700."""
    from drdm_web.exports import ExportFolder

    exports = ExportFolder(tmp_path / "exports")
    victim = tmp_path / "victim.h5"
    victim.write_bytes(b"precious")
    exports.prepare()
    assert stat.S_IMODE(exports.path.stat().st_mode) == 0o700
    (exports.path / "stack_transform.h5").symlink_to(victim)
    first = exports.add_file("stack_transform.h5", lambda path: path.write_bytes(b"transform"))
    second = exports.add_file("stack_transform.h5", lambda path: path.write_bytes(b"again"))
    assert (first.name, second.name) == ("stack_transform-2.h5", "stack_transform-3.h5")
    assert victim.read_bytes() == b"precious" and first.read_bytes() == b"transform"
    assert stat.S_IMODE(first.stat().st_mode) == 0o600

    def sample_folder(parent):
        (parent / "stack_T10_seed3").mkdir()
        (parent / "stack_T10_seed3" / "image.nii.gz").write_bytes(b"image")
        return parent / "stack_T10_seed3"

    (exports.path / "stack_T10_seed3").symlink_to(tmp_path)
    folder = exports.add_folder(sample_folder)
    assert folder.name == "stack_T10_seed3-2" and not (tmp_path / "image.nii.gz").exists()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "image.nii.gz").stat().st_mode) == 0o600
    assert sorted(p.name for p in exports.path.iterdir()) == [
        "stack_T10_seed3", "stack_T10_seed3-2", "stack_transform-2.h5", "stack_transform-3.h5", "stack_transform.h5"]
    assert exports.shown(folder) == "stack_T10_seed3-2"


def test_a_killed_server_s_uploads_are_removed_at_the_next_start(tmp_path, monkeypatch):
    """Item 10: the folder of a server killed with SIGKILL goes at the next start; a live server's folder, another
    prefix's, a link with the prefix and a folder without a lock file (an older version's) stay."""
    import signal
    import subprocess
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    holder = ("import sys, time; sys.path.insert(0, sys.argv[1]); from drdm_web.uploads import UploadFolder; "
              "u = UploadFolder(1); (u.path / 'volume-patient.nii.gz').write_bytes(b'x'); print(u.path, flush=True); "
              "time.sleep(120)")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    killed = subprocess.Popen([sys.executable, "-c", holder, str(REPO)], stdout=subprocess.PIPE, text=True, env=env)
    alive = subprocess.Popen([sys.executable, "-c", holder, str(REPO)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        killed_folder, alive_folder = Path(killed.stdout.readline().strip()), Path(alive.stdout.readline().strip())
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        (tmp_path / "other-uploads-x").mkdir()
        (tmp_path / "drdm-web-uploads-older-version").mkdir()  # no lock file: maybe a running older server
        (tmp_path / "drdm-web-uploads-link").symlink_to(tmp_path / "other-uploads-x")
        uploads = UploadFolder(1)
        try:
            assert uploads.leftovers == [killed_folder] and not killed_folder.exists()
            assert alive_folder.is_dir() and (tmp_path / "other-uploads-x").is_dir()
            assert (tmp_path / "drdm-web-uploads-link").is_symlink()
            assert (tmp_path / "drdm-web-uploads-older-version").is_dir()
        finally:
            uploads.remove()
    finally:
        alive.kill()
        alive.wait(10)
