"""The QA picture of a deformation: original, deformed, deformation grid, det J map, label contours.

2D images give one row; 3D volumes give one row per central slice: for a 2D model on a 3D stack, the central
slice and a reslice across the slices (through-plane view, where a deformation torn between slices would show
at a glance); otherwise the three orthogonal central slices. Pixels are drawn with their physical aspect.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap, TwoSlopeNorm  # noqa: E402

GRID_LINES = 24  # deformation-grid lines across the longer side


def central_views(shape: tuple[int, ...], slice_axis: int | None) -> list[tuple[int | None, int]]:
    """``(axis cut across, index)`` of each row: ``(None, 0)`` for a 2D image; for a 3D volume sliced along
    ``slice_axis``, its central slice and the central reslice across the first in-plane axis (through-plane);
    else the three central orthogonal slices."""
    if len(shape) == 2:
        return [(None, 0)]
    if slice_axis is None:
        axes = [0, 1, 2]
    else:
        axes = [slice_axis] + ([min(a for a in range(3) if a != slice_axis)] if shape[slice_axis] > 1 else [])
    return [(axis, shape[axis] // 2) for axis in axes]


def cut_plane(volume: np.ndarray, axis: int | None, index: int) -> np.ndarray:
    return volume if axis is None else np.take(volume, index, axis=axis)


def save_qa_figure(path: str | Path, original: np.ndarray, deformed: np.ndarray, ddf: np.ndarray, det: np.ndarray,
                   spacing: tuple[float, ...], labels: np.ndarray | None = None,
                   deformed_labels: np.ndarray | None = None, slice_axis: int | None = None,
                   title: str = "", held: np.ndarray | None = None) -> Path:
    """Draw the QA montage to ``path`` (PNG).

    Args:
        original, deformed, det: arrays in array order (``(z, y, x)`` or ``(y, x)``).
        ddf: ``(ndim, *shape)`` displacement in voxels, channel i along array axis i (pull field).
        spacing: mm per voxel, array order.
        labels, deformed_labels: optional integer maps drawn as contours.
        slice_axis: for 3D deformed slice by slice: the central slice across this axis and a through-plane reslice.
        held: optional boolean array of the voxels held still (``keep``/``only``), tinted cyan and outlined on the
            original and grid panels.
    """
    views = central_views(original.shape, slice_axis)
    heights = [_row_height(original.shape, spacing, axis) for axis, _ in views]
    fig, axes = plt.subplots(len(views), 4, figsize=(16, 0.4 + 4.0 * sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    low, high = np.percentile(original, [0.5, 99.5])
    det_norm = TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=max(2.0, float(np.nanmax(det))))
    det_image = None
    for row, (axis, index) in enumerate(views):
        plane_axes = [a for a in range(original.ndim) if a != axis]
        aspect = spacing[plane_axes[0]] / spacing[plane_axes[1]]
        a, b = plane_axes
        orig2d, def2d = cut_plane(original, axis, index), cut_plane(deformed, axis, index)
        u_a, u_b = cut_plane(ddf[a], axis, index), cut_plane(ddf[b], axis, index)
        det2d = cut_plane(det, axis, index)
        panels = axes[row]
        panels[0].imshow(orig2d, cmap="gray", vmin=low, vmax=high, aspect=aspect)
        panels[1].imshow(def2d, cmap="gray", vmin=low, vmax=high, aspect=aspect)
        panels[2].imshow(def2d, cmap="gray", vmin=low, vmax=high, aspect=aspect)
        _draw_grid(panels[2], u_a, u_b)
        det_image = panels[3].imshow(det2d, cmap="RdBu_r", norm=det_norm, aspect=aspect)
        folded = np.ma.masked_where(det2d > 0, np.ones_like(det2d))
        panels[3].imshow(folded, cmap="spring", vmin=0, vmax=1, aspect=aspect, interpolation="nearest")
        if held is not None:
            for panel in (panels[0], panels[2]):
                _held_overlay(panel, cut_plane(held, axis, index), aspect)
        if labels is not None:
            _contours(panels[0], cut_plane(labels, axis, index))
        if deformed_labels is not None:
            _contours(panels[1], cut_plane(deformed_labels, axis, index))
        where = "" if axis is None else f" — slice {index} across axis {'zyx'[axis] if original.ndim == 3 else axis}"
        if slice_axis is not None and axis != slice_axis:
            where += " (through-plane)"
        n_folded = int((det2d <= 0).sum())
        titles = ["original" + (" (cyan: held still)" if held is not None else ""), "deformed", "deformation grid",
                  f"det J (folded: {n_folded} px, magenta)"]
        for panel, text in zip(panels, titles):
            panel.set_title(text + (where if panel is panels[0] else ""), fontsize=10)
            panel.set_xticks([])
            panel.set_yticks([])
    fig.colorbar(det_image, ax=axes[:, 3].tolist(), fraction=0.046, pad=0.02, label="det J (1 = volume kept)")
    if title:
        fig.suptitle(title, fontsize=11)
    path = Path(path)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def _held_overlay(panel, held2d: np.ndarray, aspect: float) -> None:
    """Tint the held-still voxels cyan and outline them."""
    tint = np.ma.masked_where(~held2d, np.ones(held2d.shape))
    panel.imshow(tint, cmap=ListedColormap(["cyan"]), vmin=0, vmax=1, alpha=0.3, aspect=aspect,
                 interpolation="nearest")
    if held2d.any() and not held2d.all():
        panel.contour(held2d.astype(float), levels=[0.5], colors="cyan", linewidths=1.2)


def _row_height(shape: tuple[int, ...], spacing: tuple[float, ...], axis: int | None) -> float:
    """Relative height of a row: the physical height / width of its plane (a thin reslice gets a low row)."""
    a, b = [k for k in range(len(shape)) if k != axis]
    return float(np.clip(shape[a] * spacing[a] / (shape[b] * spacing[b]), 0.3, 1.0))


def _draw_grid(panel, u_a: np.ndarray, u_b: np.ndarray) -> None:
    """Draw where the lines of a regular grid of the original image go (the inverse of the pull field is not
    needed: each deformed pixel p shows original point p + u(p), so we draw the level sets of p + u(p))."""
    rows, cols = u_a.shape
    pos_a = np.arange(rows)[:, None] + u_a
    pos_b = np.arange(cols)[None, :] + u_b
    step = max(rows, cols) / GRID_LINES
    levels_a = np.arange(0, rows, step)
    levels_b = np.arange(0, cols, step)
    panel.contour(pos_a, levels=levels_a, colors="yellow", linewidths=0.6)
    panel.contour(pos_b, levels=levels_b, colors="yellow", linewidths=0.6)


def _contours(panel, labels: np.ndarray) -> None:
    values = [v for v in np.unique(labels) if v != 0]
    colours = plt.get_cmap("tab10")
    for i, value in enumerate(values[:10]):
        mask = (labels == value).astype(float)
        if mask.any() and not mask.all():
            panel.contour(mask, levels=[0.5], colors=[colours(i)], linewidths=1.0)
