"""``drdm web`` as a command another package adds: ``drdm_web.command`` through the ``drdm.commands`` entry point."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "DRDMSlicer"))
from drdm.physical.io import InputError  # noqa: E402
from drdm.settings import DEFAULTS, DEVICES  # noqa: E402

from drdm_web import command  # noqa: E402

ENTRY_POINT = "drdm_web.command:add_command"


@pytest.fixture
def parser() -> argparse.ArgumentParser:
    """A command line like drdm's, with only the sub-command that ``add_command`` adds."""
    parser = argparse.ArgumentParser(prog="drdm")
    command.add_command(parser.add_subparsers(dest="command", required=True))
    return parser


def test_the_web_command_has_its_options_and_defaults(parser):
    args = parser.parse_args(["web"])
    assert args.func is command.run_web and args.volume is None
    assert (args.host, args.port, args.export_dir, args.device) == ("127.0.0.1", 8080, "drdm-web-exports", DEFAULTS.device)
    assert (args.timeout, args.max_upload_mb, args.idle_minutes) == (0, 2048, 0)
    assert args.segmentation is args.model is args.secret_file is args.data_dir is args.access_log is None
    args = parser.parse_args(["web", "v.nii.gz", "--segmentation", "s.nii.gz", "--model", "cmr-2d", "--host", "0.0.0.0",
                              "--port", "9000", "--export-dir", "out", "--device", "cpu", "--timeout", "5",
                              "--secret-file", "key", "--data-dir", "data", "--max-upload-mb", "10",
                              "--idle-minutes", "2.5", "--access-log", "access.log"])
    assert (args.volume, args.segmentation, args.model, args.host, args.port, args.export_dir, args.device) == (
        "v.nii.gz", "s.nii.gz", "cmr-2d", "0.0.0.0", 9000, "out", "cpu")
    assert (args.timeout, args.secret_file, args.data_dir, args.max_upload_mb, args.idle_minutes, args.access_log) == (
        5, "key", "data", 10.0, 2.5, "access.log")


def test_the_help_names_every_option(parser, capsys):
    with pytest.raises(SystemExit):
        parser.parse_args(["web", "--help"])
    text = capsys.readouterr().out
    for flag in ("--segmentation", "--model", "--host", "--port", "--export-dir", "--device", "--timeout", "--secret-file",
                 "--data-dir", "--max-upload-mb", "--idle-minutes", "--access-log"):
        assert flag in text
    assert "default 127.0.0.1: this machine only" in text and "{" + ",".join(DEVICES) + "}" in text


def test_a_device_outside_the_choices_is_refused(parser, capsys):
    with pytest.raises(SystemExit):
        parser.parse_args(["web", "--device", "tpu"])
    assert "invalid choice" in capsys.readouterr().err


def test_the_command_imports_without_trame_and_says_how_to_install_it(monkeypatch):
    """Every ``drdm`` invocation loads the entry point: the module must not need trame or the Slicer core."""
    blocked = "import sys; sys.modules.update(trame=None, trame_slicer=None, wslink=None, slicer=None); "
    check = "import drdm_web.command; print(sorted(m for m, v in sys.modules.items() if v and m.startswith(('trame', 'slicer'))))"
    result = subprocess.run([sys.executable, "-c", blocked + check], capture_output=True, text=True, check=True,
                            env={"PYTHONPATH": f"{REPO / 'DRDMSlicer'}:{REPO}", "PATH": "/usr/bin:/bin"})
    assert json.loads(result.stdout.replace("'", '"')) == []
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trame_slicer" else real_find_spec(name, *a))
    with pytest.raises(InputError, match=r"needs the web extra.*pip install 'drdm\[web\]'"):
        command.run_web(argparse.Namespace(volume=None))


def test_pyproject_declares_the_entry_point():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11 reads TOML")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["entry-points"]["drdm.commands"] == {"web": ENTRY_POINT}


def test_the_installed_entry_point_is_the_web_command():
    """The installed metadata (setup_venv.sh installs this checkout) registers the web command, and ``drdm`` lists it."""
    found = {point.name: point.value for point in importlib.metadata.entry_points(group="drdm.commands")}
    if not found:
        pytest.skip("no drdm.commands entry point is installed (pip install -e '.[web]' registers drdm web)")
    assert found.get("web") == ENTRY_POINT, found
    from drdm.cli import build_parser

    web = build_parser()._subparsers._group_actions[0].choices["web"]
    assert web.parse_args([]).func is command.run_web
