"""Per-segment volume change of a deformation: each label's volume before and after, in mL (area in mm² for 2D
images) and in %. One helper for every statistics output (CLI ``stats.json``, the Slicer table, the web table).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import SimpleITK as sitk


def segment_volume_changes(before: sitk.Image, after: sitk.Image,
                           names: Mapping[int, str] | None = None) -> list[dict]:
    """Volume of every non-zero label of two label maps on the same grid (``before``: the input's labels,
    ``after``: the deformed labels).

    Returns one JSON-ready dictionary per label value (ascending): ``label``, ``name`` (from ``names``, else
    ``"label <value>"``), ``before`` and ``after`` (mL in 3D, i.e. voxels × voxel volume in mm³ / 1000; mm² in
    2D), ``unit`` (``"mL"`` or ``"mm²"``) and ``change_percent`` (``100 (after - before) / before``; None when the
    label is absent before).
    """
    counts_before = _counts(before)
    counts_after = _counts(after)
    spacing = np.prod(before.GetSpacing())
    three_d = before.GetDimension() == 3
    scale, unit = (spacing / 1000.0, "mL") if three_d else (spacing, "mm²")
    changes = []
    for value in sorted(set(counts_before) | set(counts_after)):
        old, new = counts_before.get(value, 0) * scale, counts_after.get(value, 0) * scale
        changes.append({
            "label": value, "name": (names or {}).get(value, f"label {value}"), "before": float(old),
            "after": float(new), "unit": unit, "change_percent": float(100.0 * (new - old) / old) if old else None,
        })
    return changes


def _counts(labels: sitk.Image) -> dict[int, int]:
    values, counts = np.unique(sitk.GetArrayViewFromImage(labels), return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts) if v != 0}


def volume_change_rows(changes: Sequence[Mapping] | None) -> list[tuple[str, str]]:
    """Table rows ``(what, value)`` for :func:`segment_volume_changes`'s result, e.g.
    ``("myocardium volume", "12.40 → 13.10 mL (+5.6 %)")``; no rows for None."""
    rows = []
    for change in changes or []:
        percent = "new" if change["change_percent"] is None else f"{change['change_percent']:+.1f} %"
        rows.append((f"{change['name']} {'volume' if change['unit'] == 'mL' else 'area'}",
                     f"{change['before']:.2f} → {change['after']:.2f} {change['unit']} ({percent})"))
    return rows
