"""Start the ``drdm web`` server (called by ``drdm web``)."""

from __future__ import annotations

import os
from pathlib import Path

from .app import DRDMWebApp, WebSettings


def serve(volume: str | None = None, *, segmentation: str | None = None, model: str | None = None,
          host: str = "127.0.0.1", port: int = 8080, export_dir: str | os.PathLike = "drdm-web-exports",
          device: str = "auto", timeout: int = 0) -> None:
    """Build the app and serve it until interrupted (``timeout`` s without a browser stops it; 0: never)."""
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")  # offscreen, no X server needed
    settings = WebSettings(volume=volume, segmentation=segmentation, model=model, export_dir=Path(export_dir),
                           device=device)
    app = DRDMWebApp(settings)
    print(f"drdm web: serving on http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    app.server.start(host=host, port=port, open_browser=False, timeout=timeout, show_connection_info=False,
                     disable_logging=True)
