"""The det J overlay's colours: clear where the volume is kept, coloured where it changes (no MRML, no Qt).

One rule for the Slicer module and the web app: a 256-entry table over det J in (0, 2]; entry 0 is folding
(det J ≤ 0, magenta); blue below 1 (enlarged), red above 1 (shrunk), paler the closer to 1; the entries with
``|log det J| < threshold`` are fully transparent, all others opaque (the layer's opacity then applies). The alpha
is all-or-nothing on purpose: Slicer's scalar-volume display combines a colour table's alpha with its threshold
mask by a logical AND, so intermediate alphas would show as opaque anyway. With ``SetWindowLevelMinMax(-2/254,
2)`` entry ``i`` shows ``det J = 2 (i - 1) / 254`` (entry 128 is exactly 1).
"""

from __future__ import annotations

import math

JACOBIAN_RANGE = (0.0, 2.0)
JACOBIAN_COLOURS = 256
DEFAULT_JACOBIAN_THRESHOLD = 0.2  # |log det J| below it (det J within 0.82 … 1.22, a local volume change under
# about 20 %) is not coloured: on a cardiac stack deformed at T'=48 that leaves the myocardium readable where it
# barely moves, and every region that shrinks or grows by more than a fifth is marked
JACOBIAN_SHOWN_FIRST = False  # after Generate the views show the deformed anatomy alone: over a deformation of the
# size the bundled model gives on the ACDC stack (18 mm) most of the view changes by more than the threshold, so an
# overlay there hides the anatomy a clinician wants to judge; it stays one click (or one show_sample call) away
FOLDED_RGBA = (1.0, 0.0, 1.0, 1.0)


def entry_value(index: int) -> float:
    """det J shown by table entry ``index`` (1 … 255); entry 0 stands for det J ≤ 0."""
    return JACOBIAN_RANGE[1] * (index - 1) / (JACOBIAN_COLOURS - 2)


def jacobian_alpha(det: float, threshold: float) -> float:
    """Opacity of one det J value: 0 for ``|log det| < threshold`` (the volume is kept), else 1; folding
    (``det ≤ 0``) is always 1. ``threshold`` ≤ 0 colours everything (det J = 1 as white)."""
    if det <= 0 or threshold <= 0:
        return 1.0
    return 0.0 if abs(math.log(det)) < threshold else 1.0


def jacobian_rgb(det: float) -> tuple[float, float, float]:
    """The diverging colour of ``det`` in (0, 2]: blue below 1, white at 1, red above 1."""
    t = min(max(det / JACOBIAN_RANGE[1], 0.0), 1.0)
    if t < 0.5:
        s = t / 0.5
        return (0.1 + 0.9 * s, 0.3 + 0.7 * s, 1.0)
    s = (t - 0.5) / 0.5
    return (1.0, 1.0 - 0.8 * s, 1.0 - 0.9 * s)


def jacobian_table(threshold: float = DEFAULT_JACOBIAN_THRESHOLD) -> list[tuple[str, float, float, float, float]]:
    """The 256 entries ``(name, r, g, b, alpha)`` of the det J colour table for ``threshold``."""
    entries = [("folded", *FOLDED_RGBA)]
    for index in range(1, JACOBIAN_COLOURS):
        det = entry_value(index)
        entries.append((f"{det:.3f}", *jacobian_rgb(det), jacobian_alpha(det, threshold)))
    return entries
