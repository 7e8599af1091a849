"""The results as the page shows them: the list's entries, the statistics table and the stem of their exports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from drdm.physical.segment_volumes import volume_change_rows

from .files import safe_name

if TYPE_CHECKING:
    from DRDMSlicerLib.logic import DeformationSample

OPTIONAL_STAT_KEYS = {  # rows shown only when the run has them (2D-on-3D slices; a size; regions)
    "slices", "through_plane_roughness_ratio", "magnitude_mm", "size_reached_mm", "natural_mm", "keep", "only",
    "margin_mm", "max_mm_in_kept", "max_mm_outside_region"}
STAT_ROWS = (  # (label, statistics key, format)
    ("mean |u|", "mean_mm", "{:.2f} mm"), ("mean |u| (% FOV)", "mean_percent_fov", "{:.2f} %"),
    ("p95 |u|", "p95_mm", "{:.2f} mm"), ("p95 |u| (% FOV)", "p95_percent_fov", "{:.2f} %"),
    ("folded voxels", "folding_fraction", "{:.3%}"), ("det J min", "det_min", "{:.3f}"),
    ("det J max", "det_max", "{:.3f}"), ("seed", "seed", "{}"), ("level T'", "level", "{}"),
    ("mode / speed", None, None), ("slices", "slices", "{}"),
    ("through-plane / in-plane roughness", "through_plane_roughness_ratio", "{:.2f}"),
    ("size asked", "magnitude_mm", "{:.2f} mm"), ("size reached", "size_reached_mm", "{:.2f} mm"),
    ("the model's own size", "natural_mm", "{:.2f} mm"), ("kept still (labels)", "keep", "{}"),
    ("deformed only (labels)", "only", "{}"), ("margin", "margin_mm", "{:g} mm"),
    ("largest |u| in kept", "max_mm_in_kept", "{:.3f} mm"),
    ("largest |u| outside the region", "max_mm_outside_region", "{:.3f} mm"),
    ("model", "model", "{}"), ("model sha256", "model_sha256", "{:.12}"),
    ("time", "seconds", "{:.1f} s"), ("device", "device", "{}"),
)


def sample_stem(sample: DeformationSample) -> str:
    """The file-name stem of a result's exports: its volume's name, letters/digits/``._-`` only."""
    return safe_name(sample.volumeNode.GetName().removesuffix(" volume").replace(" ", "_"), "drdm")


def result_items(samples: Sequence[DeformationSample]) -> list[dict]:
    """``[{"value": index, "title", "subtitle"}]`` of the result list: level, seed, model, mean |u|, folding."""
    return [dict(value=i, title=f"T'={s.statistics['level']} seed {s.statistics['seed']}",
                 subtitle=f"{s.statistics['model']}, {s.statistics['mean_mm']:.1f} mm mean, "
                          f"{100 * s.statistics['folding_fraction']:.2f} % folded")
            for i, s in enumerate(samples)]


def stat_rows(stats: dict) -> list[dict]:
    """``[{"name", "value"}]`` of the statistics table for one result's statistics (rows of options the run did
    not use left out), then the segments' volume changes."""
    rows = []
    for label, key, fmt in STAT_ROWS:
        if key in OPTIONAL_STAT_KEYS and (stats.get(key) is None or stats.get(key) == []):
            continue  # not part of this run (no slices, no size, no regions)
        if key is None:
            value = f"{stats.get('mode')} / {stats.get('speed')}"
        else:
            value = "—" if stats.get(key) is None else fmt.format(stats[key])
        rows.append(dict(name=label, value=value))
    return rows + [dict(name=label, value=value) for label, value in volume_change_rows(stats.get("segment_volumes"))]
