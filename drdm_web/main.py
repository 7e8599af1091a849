"""Start the ``drdm web`` server (called by ``drdm web``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from drdm.physical.io import InputError

from .access import check_bind, page_url, random_secret, read_secret_file
from .files import DEFAULT_MAX_UPLOAD_MB, DataFolder, check_max_upload


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


def serve(volume: str | None = None, *, segmentation: str | None = None, model: str | None = None,
          host: str = "127.0.0.1", port: int = 8080, export_dir: str | os.PathLike = "drdm-web-exports",
          device: str = "auto", timeout: int = 0, secret_file: str | os.PathLike | None = None,
          data_dir: str | os.PathLike | None = None, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
          idle_minutes: float = 0.0) -> None:
    """Build the app and serve it until interrupted (``timeout`` s without a browser stops it; 0: never).

    The access secret (random, or the first line of ``secret_file``) is wslink's ``authKey``: a browser needs the
    printed URL, which carries it. Uploads go to an owner-only temporary folder removed at exit.
    """
    secret = read_secret_file(secret_file) if secret_file else random_secret()
    check_bind(host, secret)
    check_max_upload(max_upload_mb)
    if idle_minutes < 0:
        raise InputError(f"--idle-minutes {idle_minutes:g}: must be 0 (never) or more")
    data = check_inputs_inside(data_dir or default_data_dir(volume), volume=volume, segmentation=segmentation)
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")  # offscreen, no X server needed
    from .app import DRDMWebApp, WebSettings  # the Slicer core: loaded only once the arguments are good

    settings = WebSettings(volume=str(Path(volume).absolute()) if volume else None,
                           segmentation=str(Path(segmentation).absolute()) if segmentation else None, model=model,
                           export_dir=Path(export_dir), device=device, data_dir=data.root, max_upload_mb=max_upload_mb,
                           idle_minutes=idle_minutes, secret=secret)
    app = DRDMWebApp(settings)
    # trame parses sys.argv for its own options (--authKey, --host, …): it sees only what is set here
    app.server.cli.set_defaults(authKey=secret, authKeyFile=None)
    sys.argv = sys.argv[:1]
    print(f"drdm web: data folder {data.root}; uploads in {app.uploads.path} (owner-only, removed at exit)", flush=True)
    print(f"drdm web: open {page_url(host, port, secret)}  (Ctrl-C stops; the link carries the access secret)",
          flush=True)
    try:
        app.server.start(host=host, port=port, open_browser=False, timeout=timeout, show_connection_info=False,
                         disable_logging=True)
    finally:
        app.uploads.remove()
