"""The report of ``drdm evaluate``: ``results.csv``, ``summary.md``, one box plot per metric and one picture per
pair (fixed, warped moving, EPE map, det J map)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402

from ..physical.qa import central_views, cut_plane  # noqa: E402

COLUMNS = ("pair", "label", "voxels", "epe_mean_mm", "epe_median_mm", "epe_p95_mm", "dice", "hd95_mm",
           "inverse_epe_mean_mm", "direction_warning", "folding_percent", "det_min", "det_max", "seconds", "predicted")
PLOTTED = {"epe_mean_mm": "mean EPE (mm)", "epe_p95_mm": "p95 EPE (mm)", "dice": "Dice",
           "hd95_mm": "95 % Hausdorff (mm)", "folding_percent": "folding (% of voxels)"}
SUMMARISED = ("epe_mean_mm", "epe_median_mm", "epe_p95_mm", "dice", "hd95_mm", "inverse_epe_mean_mm")


def write_report(folder: Path, rows: list[dict], warnings: dict[str, str]) -> None:
    """Write ``results.csv``, the box plots and ``summary.md`` of every pair's ``rows`` into ``folder`` (the
    per-pair pictures are drawn as the pairs are scored: :func:`save_pair_picture`)."""
    write_csv(folder / "results.csv", rows)
    for metric, title in PLOTTED.items():
        save_box_plot(folder / f"boxplot_{metric}.png", rows, metric, title)
    (folder / "summary.md").write_text(summary_markdown(rows, warnings), encoding="utf-8")


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _cell(row.get(key)) for key in COLUMNS})


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.10g}" if isinstance(value, float) else str(value)


def _labels(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(row["label"] for row in rows))


def _finite(rows: list[dict], label: str, metric: str) -> list[float]:
    values = [row[metric] for row in rows if row["label"] == label and row.get(metric) is not None]
    return [float(v) for v in values if math.isfinite(v)]


def save_box_plot(path: Path, rows: list[dict], metric: str, title: str) -> None:
    """One box per label (values over the pairs) of ``metric``."""
    groups = [(label, _finite(rows, label, metric)) for label in _labels(rows)]
    groups = [(label, values) for label, values in groups if values]
    fig, axis = plt.subplots(figsize=(1.2 + 0.9 * max(1, len(groups)), 3.6))
    if groups:
        axis.boxplot([values for _, values in groups])
        axis.set_xticks(range(1, len(groups) + 1), [label for label, _ in groups])
    axis.set_xlabel("label")
    axis.set_title(title, fontsize=10)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def save_pair_picture(path: Path, result) -> None:
    """Fixed, warped moving, EPE map (mm) and det J map of one pair; central slices of a 3D volume."""
    views = central_views(result.fixed.shape, None)
    fig, axes = plt.subplots(len(views), 4, figsize=(14, 3.6 * len(views)), squeeze=False)
    low, high = np.percentile(result.fixed, [0.5, 99.5])
    det_norm = TwoSlopeNorm(vmin=min(0.0, float(result.det.min())), vcenter=1.0, vmax=max(2.0, float(result.det.max())))
    epe_max = max(float(np.percentile(result.epe, 99.5)), 1e-6)
    for row, (axis, index) in enumerate(views):
        a, b = [k for k in range(result.fixed.ndim) if k != axis]
        aspect = result.spacing[a] / result.spacing[b]
        panels = axes[row]
        panels[0].imshow(cut_plane(result.fixed, axis, index), cmap="gray", vmin=low, vmax=high, aspect=aspect)
        panels[1].imshow(cut_plane(result.warped, axis, index), cmap="gray", vmin=low, vmax=high, aspect=aspect)
        epe_image = panels[2].imshow(cut_plane(result.epe, axis, index), cmap="magma", vmin=0, vmax=epe_max, aspect=aspect)
        det_image = panels[3].imshow(cut_plane(result.det, axis, index), cmap="RdBu_r", norm=det_norm, aspect=aspect)
        for panel, text in zip(panels, ("fixed", "moving warped by the prediction", "end-point error", "det J")):
            panel.set_title(text, fontsize=10)
            panel.set_xticks([])
            panel.set_yticks([])
    fig.colorbar(epe_image, ax=axes[:, 2].tolist(), fraction=0.046, pad=0.02, label="EPE (mm)")
    fig.colorbar(det_image, ax=axes[:, 3].tolist(), fraction=0.046, pad=0.02, label="det J")
    fig.suptitle(result.pair + ("  —  DIRECTION WARNING" if result.warning else ""), fontsize=11, y=1.02)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def summary_markdown(rows: list[dict], warnings: dict[str, str]) -> str:
    """summary.md: per-label mean ± SD over the pairs, per-pair det J / time / direction, the warnings."""
    pairs = list(dict.fromkeys(row["pair"] for row in rows))
    lines = ["# Registration evaluation", "",
             f"{len(pairs)} pairs. Ground truth: each pair's `transform.h5`. A predicted transform must map fixed-grid "
             "points to moving points (as `SimpleITK.Resample(moving, fixed, transform)` uses it). EPE: end-point "
             "error in mm on the fixed grid; Dice and 95 % Hausdorff: moving labels warped by the prediction "
             "(nearest neighbour) vs fixed labels. Values: mean ± SD over the pairs.", "",
             "| label | " + " | ".join(SUMMARISED) + " |", "|---" * (len(SUMMARISED) + 1) + "|"]
    for label in _labels(rows):
        lines.append(f"| {label} | " + " | ".join(_mean_sd(_finite(rows, label, m)) for m in SUMMARISED) + " |")
    lines += ["", "| pair | folding % | det J min | det J max | seconds | direction | picture |", "|---" * 7 + "|"]
    for pair in pairs:
        first = next(row for row in rows if row["pair"] == pair)
        seconds = "–" if first["seconds"] is None else f"{first['seconds']:.2f}"
        direction = "**inverse fits far better**" if pair in warnings else "ok"
        lines.append(f"| {pair} | {first['folding_percent']:.3f} | {first['det_min']:.3f} | "
                     f"{first['det_max']:.3f} | {seconds} | {direction} | pairs/{pair}.png |")
    lines += ["", "## Direction warnings", ""] + ([f"- {w}" for w in warnings.values()] if warnings else ["none"])
    return "\n".join(lines) + "\n"
