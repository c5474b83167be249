"""Per-box threshold: the box as a constraint on a probability map (BoxInst's tight-box assumption).

A tightly drawn box touches its object on all four sides, so the object's mask projected onto x covers
the box's columns and projected onto y covers its rows. Of the thresholds on :data:`GRID` not above a
cap (the run's validated operating point, in ``weakseg refine``), the one chosen is the **highest whose
mask** ``p > t`` **inside the box spans the box in both directions**. The box can only lower the
threshold below the cap: it adds the faint ends of a defect that the validated threshold cuts off, and
never thins a mask the student is sure of. A thin crack from corner to corner spans its box as well,
so cracks need no special case.

Spanning at ``t``: every column of the box, but :func:`span_tolerance` columns at each end (boxes are
drawn to about a pixel, and a float box's edge pixels are only partly inside), holds a pixel above
``t``; and likewise every row. Masks shrink as ``t`` rises, so the spanning thresholds are exactly those
below the smallest per-column and per-row maximum: one pass over the crop, whatever the grid.

When no threshold spans (the student misses part of the box): the highest threshold with the best
coverage, the mean of the fractions of columns and of rows reached. Coverage only grows as ``t``
falls, so this lowers the threshold as long as the mask reaches more of the box and stops where going
lower would only add pixels inside what it already reaches. With nothing above even the lowest
threshold that is the cap, and the mask is empty (kept and flagged downstream, as an empty mask is).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Thresholds tried per box: the grid the run's decision threshold is chosen on
#: (:data:`weakseg.student.decision.THRESHOLDS`, not imported here so teachers load without torch).
GRID: tuple[float, ...] = (*(round(float(t), 2) for t in np.arange(0.05, 0.96, 0.05)), 0.97, 0.98, 0.99)
#: Slack at each end of the box when checking that a mask spans it: at least this many pixels ...
TOLERANCE_PX = 1
#: ... or this fraction of the box's side, whichever is larger.
TOLERANCE_FRACTION = 0.02


def span_tolerance(length: int, pixels: int = TOLERANCE_PX, fraction: float = TOLERANCE_FRACTION) -> int:
    """Pixels a spanning mask may leave out at each end of a side of ``length`` (at least one is kept)."""
    tol = max(int(pixels), int(np.floor(fraction * length)))
    return max(0, min(tol, (length - 1) // 2))


def candidates(cap: float, grid: Sequence[float] = GRID) -> list[float]:
    """The thresholds tried, highest first: ``cap`` itself (it need not lie on the grid), then the
    grid's values below it."""
    return [float(cap), *sorted((float(t) for t in grid if t < cap), reverse=True)]


def box_threshold(
    prob: np.ndarray,
    cap: float = 0.5,
    *,
    grid: Sequence[float] = GRID,
    tolerance_px: int = TOLERANCE_PX,
    tolerance_fraction: float = TOLERANCE_FRACTION,
) -> float:
    """The threshold for one box; ``prob`` is the probability crop of the box, ``(h, w)``."""
    ts = candidates(cap, grid)
    if prob.ndim != 2 or prob.size == 0:
        return ts[0]
    cols = _interior(prob.max(axis=0), tolerance_px, tolerance_fraction)  # best pixel of each column
    rows = _interior(prob.max(axis=1), tolerance_px, tolerance_fraction)
    reach = min(float(cols.min()), float(rows.min()))  # spans at t exactly when t < reach
    for t in ts:
        if reach > t:
            return t
    best, best_coverage = ts[0], -1.0
    for t in ts:  # highest first, so a tie keeps the higher threshold
        coverage = 0.5 * (float((cols > t).mean()) + float((rows > t).mean()))
        if coverage > best_coverage:
            best, best_coverage = t, coverage
    return best


def box_mask(
    prob: np.ndarray,
    cap: float = 0.5,
    *,
    grid: Sequence[float] = GRID,
    tolerance_px: int = TOLERANCE_PX,
    tolerance_fraction: float = TOLERANCE_FRACTION,
) -> tuple[np.ndarray, float]:
    """``prob > t`` for the box's threshold ``t`` (see :func:`box_threshold`), and ``t``."""
    t = box_threshold(prob, cap, grid=grid, tolerance_px=tolerance_px, tolerance_fraction=tolerance_fraction)
    return prob > t, t


def spans(
    mask: np.ndarray, tolerance_px: int = TOLERANCE_PX, tolerance_fraction: float = TOLERANCE_FRACTION
) -> bool:
    """Whether a box-cropped mask spans its box in both directions (the test :func:`box_threshold` uses)."""
    if mask.ndim != 2 or mask.size == 0:
        return False
    cols = _interior(mask.any(axis=0), tolerance_px, tolerance_fraction)
    rows = _interior(mask.any(axis=1), tolerance_px, tolerance_fraction)
    return bool(cols.all() and rows.all())


def _interior(profile: np.ndarray, pixels: int, fraction: float) -> np.ndarray:
    tol = span_tolerance(len(profile), pixels, fraction)
    return profile[tol : len(profile) - tol]
