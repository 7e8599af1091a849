"""The record of a training run: ``metrics.csv`` (always) and TensorBoard events (when installed)."""

from __future__ import annotations

import csv
from pathlib import Path

METRICS_FILE = "metrics.csv"
METRIC_COLUMNS = ("step", "loss", "dist", "angle", "reg", "seconds", "val_loss", "val_relative_error")
LOSS_KEYS = ("loss", "dist", "angle", "reg")


class MetricsLog:
    """Rows of losses per logged step and validation values when measured. Opening it for a resumed run keeps
    the rows up to the checkpoint's step and drops those written after it (they will be recomputed)."""

    def __init__(self, out: Path, resume_step: int = 0):
        path = out / METRICS_FILE
        rows = []
        if resume_step > 0 and path.is_file():
            with open(path, encoding="utf-8", newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
        self._handle = open(path, "w", encoding="utf-8", newline="")
        self._writer = csv.DictWriter(self._handle, fieldnames=METRIC_COLUMNS)
        self._writer.writeheader()
        self._writer.writerows(rows)
        self._handle.flush()
        self._board = _tensorboard(out)

    def record(self, step: int, losses: dict[str, float], seconds: float,
               validation: tuple[float, float] | None = None) -> None:
        """Write one row: the step's losses and, when measured at this step, ``validation`` = (loss, error)."""
        row = {"step": step, **{k: f"{losses[k]:.6g}" for k in LOSS_KEYS}, "seconds": f"{seconds:.2f}",
               "val_loss": "", "val_relative_error": ""}
        if validation is not None:
            row["val_loss"], row["val_relative_error"] = f"{validation[0]:.6g}", f"{validation[1]:.6g}"
        self._writer.writerow(row)
        self._handle.flush()
        if self._board is None:
            return
        for key in LOSS_KEYS:
            self._board.add_scalar(f"train/{key}", losses[key], step)
        if validation is not None:
            self._board.add_scalar("val/loss", validation[0], step)
            self._board.add_scalar("val/relative_error", validation[1], step)

    def close(self) -> None:
        self._handle.close()
        if self._board is not None:
            self._board.close()


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out / "tensorboard"))
