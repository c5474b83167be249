"""The per-box threshold on hand-made probability crops: the box as a tight-box constraint."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from weakseg.teachers.box_threshold import GRID, box_mask, box_threshold, candidates, span_tolerance, spans


def _spans_exactly(mask: np.ndarray, tol: int = 1) -> bool:
    """Independent of the module: every column and row but ``tol`` at each end holds a mask pixel."""
    h, w = mask.shape
    return bool(mask[:, tol : w - tol].any(axis=0).all() and mask[tol : h - tol].any(axis=1).all())


def _halo_blob(h: int = 30, w: int = 40) -> np.ndarray:
    """A confident core fading into a soft halo that just reaches the box's edges (the box is drawn
    around the halo, as an annotator sees the faint ends of a defect)."""
    yy, xx = np.mgrid[:h, :w]
    r = np.sqrt(((yy - (h - 1) / 2) / ((h - 1) / 2)) ** 2 + ((xx - (w - 1) / 2) / ((w - 1) / 2)) ** 2)
    return np.clip(0.95 - 0.7 * r, 0.0, 1.0).astype(np.float32)  # 0.95 at the centre, 0.25 at the edges


def test_halo_blob_gets_the_highest_spanning_threshold() -> None:
    prob = _halo_blob()
    mask, t = box_mask(prob, cap=0.5)
    assert t < 0.5 and t in GRID  # the validated 0.5 cuts the halo off: the box lowers it
    assert _spans_exactly(mask) and spans(mask)
    assert np.array_equal(mask, prob > t)
    higher = prob > round(t + 0.05, 2)  # the next threshold up on the grid no longer spans
    assert not _spans_exactly(higher) and not spans(higher)
    assert not spans(prob > 0.5)


def test_a_mask_spanning_at_the_cap_keeps_the_cap() -> None:
    prob = np.full((12, 20), 0.9, dtype=np.float32)
    assert box_threshold(prob, cap=0.5) == 0.5  # never above the cap, however sure the student is
    assert box_threshold(prob, cap=0.37) == 0.37  # the cap need not lie on the grid
    assert candidates(0.37)[:3] == [0.37, 0.35, 0.3]


def test_thin_diagonal_line_spans_its_box() -> None:
    prob = np.full((40, 60), 0.02, dtype=np.float32)
    line = np.zeros(prob.shape, np.uint8)
    cv2.line(line, (0, 0), (59, 39), 1, thickness=1)  # 8-connected: every row and column is hit
    prob[line > 0] = 0.7
    mask, t = box_mask(prob, cap=0.5)
    assert t == 0.5
    assert np.array_equal(mask, line > 0)  # the crack alone, not the box
    assert mask.sum() < 0.05 * mask.size


def test_half_a_line_falls_back_to_the_highest_threshold_with_the_best_coverage() -> None:
    prob = np.zeros((40, 60), dtype=np.float32)
    line = np.zeros(prob.shape, np.uint8)
    cv2.line(line, (0, 0), (29, 19), 1, thickness=1)  # stops halfway: spans at no threshold
    prob[line > 0] = 0.7
    prob[0:20, 30:45] = 0.3  # a faint continuation reaching a quarter further in x, not to the end
    mask, t = box_mask(prob, cap=0.5)
    assert not spans(mask)
    # Lowering to 0.25 reaches more of the box (the faint part); lower still adds nothing more.
    assert t == 0.25
    assert np.array_equal(mask, prob > 0.25)


def test_fallback_does_not_lower_past_the_point_where_coverage_stops_growing() -> None:
    prob = np.zeros((20, 40), dtype=np.float32)
    prob[:, :20] = 0.8  # the left half, every row
    prob[5:15:3, 4:16:3] = 0.08  # faint holes inside it: more pixels at 0.05, no more of the box
    _, t = box_mask(prob, cap=0.5)
    assert t == 0.5  # the lowest grid value (0.05) would only fill the holes


def test_nothing_above_any_threshold_gives_an_empty_mask_at_the_cap() -> None:
    prob = np.full((10, 10), 0.01, dtype=np.float32)
    mask, t = box_mask(prob, cap=0.5)
    assert t == 0.5 and not mask.any()


def test_tolerance_at_each_end() -> None:
    prob = np.zeros((20, 30), dtype=np.float32)
    prob[1:19, 1:29] = 0.9  # one pixel short of the box on every side: still spans
    assert box_threshold(prob, cap=0.5) == 0.5
    prob[:, 1] = 0.0  # now two pixels short on the left: a faint 0.28 edge behind it
    prob[:, 0:2] = np.maximum(prob[:, 0:2], 0.28)
    assert box_threshold(prob, cap=0.5) == 0.25
    assert span_tolerance(30) == 1 and span_tolerance(200) == 4  # 2 % of long sides
    assert span_tolerance(1) == 0 and span_tolerance(3) == 1  # a pixel always remains


@pytest.mark.parametrize("shape", [(0, 5), (5, 0)])
def test_empty_crop_uses_the_cap(shape: tuple[int, int]) -> None:
    mask, t = box_mask(np.zeros(shape, np.float32), cap=0.4)
    assert t == 0.4 and mask.shape == shape
