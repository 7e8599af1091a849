"""Start the ``drdm web`` server (called by ``drdm web``)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from drdm.physical.io import InputError

from .access import check_bind, page_url, random_secret, read_secret_file
from .files import DataFolder
from .uploads import DEFAULT_MAX_UPLOAD_MB, check_max_upload

QUIET_LOGGERS = ("wslink", "trame_server")  # their errors carry tracebacks, exception texts and file names


def default_data_dir(volume: str | None) -> Path:
    """``--data-dir`` when not given: the folder of VOLUME, else the current folder."""
    return Path(volume).expanduser().resolve().parent if volume else Path.cwd()


def check_inputs_inside(data_dir: str | os.PathLike, **paths: str | None) -> DataFolder:
    """The data folder, after checking that the command line's VOLUME / --segmentation lie inside it."""
    folder = DataFolder(data_dir)
    for option, path in paths.items():
        if path:
            try:
                folder.resolve(os.path.abspath(Path(path).expanduser()))
            except InputError:
                raise InputError(f"{'VOLUME' if option == 'volume' else '--' + option} {path}: outside the data "
                                 f"folder {folder.root} (choose it with --data-dir)") from None
    return folder


def check_export_dir(export_dir: str | os.PathLike, data: DataFolder) -> Path:
    """The export folder's absolute path; ``InputError`` if it is the data folder or holds it (the page could open
    nothing then). One inside the data folder is allowed: typed paths cannot open it (``DataFolder.hide``)."""
    export = Path(os.path.realpath(Path(export_dir).expanduser().absolute()))
    if data.root == export or data.root.is_relative_to(export):
        raise InputError(f"--export-dir {export_dir}: it holds the data folder {data.root}, whose files the page "
                         "could then not open; choose a folder outside it, e.g. --export-dir ~/drdm-web-exports")
    return export


def serve(volume: str | None = None, *, segmentation: str | None = None, model: str | None = None,
          host: str = "127.0.0.1", port: int = 8080, export_dir: str | os.PathLike = "drdm-web-exports",
          device: str = "auto", timeout: int = 0, secret_file: str | os.PathLike | None = None,
          data_dir: str | os.PathLike | None = None, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
          idle_minutes: float = 0.0, access_log: str | os.PathLike | None = None) -> None:
    """Build the app and serve it until interrupted (``timeout`` s without an admitted browser stops it; 0: never).

    The access secret (random, or the first line of ``secret_file``) travels in the printed link; the server
    exchanges it for a session credential (a cookie) and redirects to a URL without it. Uploads go to an
    owner-only temporary folder removed at exit (and at the next start, if this server is killed). The access log
    goes to ``access_log`` (appended) or stderr.
    """
    secret = read_secret_file(secret_file) if secret_file else random_secret()
    check_bind(host, secret)
    check_max_upload(max_upload_mb)
    if idle_minutes < 0:
        raise InputError(f"--idle-minutes {idle_minutes:g}: must be 0 (never) or more")
    data = check_inputs_inside(data_dir or default_data_dir(volume), volume=volume, segmentation=segmentation)
    export = check_export_dir(export_dir, data)
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")  # offscreen, no X server needed
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    from .app import DRDMWebApp, WebSettings  # the Slicer core: loaded only once the arguments are good

    settings = WebSettings(volume=str(Path(volume).absolute()) if volume else None,
                           segmentation=str(Path(segmentation).absolute()) if segmentation else None, model=model,
                           export_dir=export, device=device, data_dir=data.root, max_upload_mb=max_upload_mb,
                           idle_minutes=idle_minutes, secret=secret, access_log=str(access_log) if access_log else None)
    app = DRDMWebApp(settings)
    # trame parses sys.argv for its own options (--authKey, --host, …): it sees only what is set here
    app.server.cli.set_defaults(authKey=random_secret(), authKeyFile=None)  # unused: wslink checks the credential
    sys.argv = sys.argv[:1]
    inside = " (inside the data folder: the page cannot open it)" if export.is_relative_to(data.root) else ""
    print(f"drdm web: data folder {data.root}; exports in {export}{inside}; uploads in {app.uploads.path} "
          "(owner-only, removed at exit)", flush=True)
    if app.uploads.leftovers:
        print(f"drdm web: removed {len(app.uploads.leftovers)} upload folder(s) left by a server that was killed",
              flush=True)
    print(f"drdm web: open {page_url(host, port, secret)}  (Ctrl-C stops; the link carries the access secret)",
          flush=True)
    try:
        app.server.start(host=host, port=port, open_browser=False, timeout=timeout, show_connection_info=False,
                         disable_logging=True)
    finally:
        app.uploads.remove()
        app.audit.close()
