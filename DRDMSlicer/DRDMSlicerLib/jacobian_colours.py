"""The det J overlay's colours: transparent where the volume is kept, coloured where it changes (no MRML, no Qt).

One rule for the Slicer module and the web app: a 256-entry table over det J in (0, 2]; entry 0 is folding
(det J ≤ 0, magenta, always opaque); blue below 1 (enlarged), red above 1 (shrunk); the alpha is 0 where
``|log det J| < threshold`` and ramps linearly to 1 where the local volume halves or doubles (``|log det J| =
log 2``), so the anatomy stays readable under moderate change and strong change stands out. With ``SetWindowLevelMinMax(-2/254, 2)`` entry ``i`` shows ``det J = 2 (i - 1) / 254`` (entry 128
is exactly 1).
"""

from __future__ import annotations

import math

JACOBIAN_RANGE = (0.0, 2.0)
JACOBIAN_COLOURS = 256
DEFAULT_JACOBIAN_THRESHOLD = 0.1  # |log det J| below it (det J within 0.905 … 1.105) is not coloured
FULL_CHANGE = math.log(2.0)  # |log det J| at which the colour is opaque: the local volume halved or doubled
FOLDED_RGBA = (1.0, 0.0, 1.0, 1.0)


def entry_value(index: int) -> float:
    """det J shown by table entry ``index`` (1 … 255); entry 0 stands for det J ≤ 0."""
    return JACOBIAN_RANGE[1] * (index - 1) / (JACOBIAN_COLOURS - 2)


def jacobian_alpha(det: float, threshold: float) -> float:
    """Opacity of one det J value: 0 for ``|log det| < threshold``, a linear ramp to 1 at ``|log det| =
    log 2`` (at ``2 × threshold`` for thresholds above ``log 2 / 2``), 1 for folding (``det ≤ 0``).
    ``threshold`` ≤ 0 colours everything opaquely, det J = 1 too (white): the overlay without the rule."""
    if det <= 0 or threshold <= 0:
        return 1.0
    distance = abs(math.log(det))
    if distance < threshold:
        return 0.0
    full = max(FULL_CHANGE, 2 * threshold)
    return _ramp((distance - threshold) / (full - threshold))


def _ramp(s: float) -> float:
    """``s`` clipped to [0, 1] (linear: a 20 % change is already tinted, a halving or doubling is opaque)."""
    return min(max(s, 0.0), 1.0)


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
