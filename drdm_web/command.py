"""``drdm web``: the command, added to the ``drdm`` command line through the ``drdm.commands`` entry point.

The engine never imports this package: ``drdm``'s command line calls :func:`add_command` for each entry point of
the group ``drdm.commands`` (``pyproject.toml``). Importing this module needs neither trame nor the Slicer core;
:func:`run_web` says which command installs them when they are missing.
"""

from __future__ import annotations

import argparse
import importlib.util

from drdm.settings import DEFAULTS, DEVICES

WEB_INSTALL_HINT = "pip install 'drdm[web]'  (from a checkout: pip install -e '.[web]')"


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``web`` sub-command (its options and :func:`run_web`) to ``drdm``'s sub-parsers."""
    web = subparsers.add_parser("web", help="the browser app: Slicer's views and a Generate panel, served on HOST:PORT")
    web.add_argument("volume", nargs="?", help="volume to load at start (server-side path)")
    web.add_argument("--segmentation", help="label map or segmentation on the volume's grid")
    web.add_argument("--model", help="model name or file offered first (default: the registry's first usable model)")
    web.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; "
                                                         "prefer an SSH tunnel to serving the network)")
    web.add_argument("--port", type=int, default=8080)
    web.add_argument("--export-dir", default="drdm-web-exports", help="where Export writes (default ./drdm-web-exports; "
                                                                      "typed paths in the page never open it)")
    web.add_argument("--device", choices=DEVICES, default=DEFAULTS.device)
    web.add_argument("--timeout", type=int, default=0, help="stop after N s without an admitted browser (0: never)")
    web.add_argument("--secret-file", help="access secret on the file's first line, 128 bits or more, file readable by "
                                           "its owner only (default: a new random one per start); the printed URL "
                                           "carries it")
    web.add_argument("--data-dir", help="folder whose files the page may open (default: VOLUME's folder, else the "
                                        "current folder)")
    web.add_argument("--max-upload-mb", type=float, default=2048, help="largest upload from the browser (default 2048)")
    web.add_argument("--idle-minutes", type=float, default=0,
                     help="after N minutes without activity another browser may take the server (0: never)")
    web.add_argument("--access-log", help="append the access log (time, address, admitted/refused/in use/ended) to "
                                          "this file (default: stderr)")
    web.set_defaults(func=run_web)


def run_web(args: argparse.Namespace) -> int:
    """``drdm web``: the browser app on the Slicer core (needs the ``web`` extra); serves until interrupted."""
    from drdm.physical.io import InputError, read_image

    if importlib.util.find_spec("trame_slicer") is None:
        raise InputError(f"drdm web needs the web extra (trame-slicer); install it with: {WEB_INSTALL_HINT}")
    if args.volume:
        read_image(args.volume, "volume")  # a clear error before the server starts
    from .main import serve  # trame and the Slicer core: imported only for this command

    serve(args.volume, segmentation=args.segmentation, model=args.model, host=args.host, port=args.port,
          export_dir=args.export_dir, device=args.device, timeout=args.timeout, secret_file=args.secret_file,
          data_dir=args.data_dir, max_upload_mb=args.max_upload_mb, idle_minutes=args.idle_minutes,
          access_log=args.access_log)
    return 0
