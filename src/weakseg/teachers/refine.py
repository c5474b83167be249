"""Refinement and quality scoring shared by every teacher.

Clip to the (optionally dilated) box, drop specks, fill holes; then score. An empty result is kept and
flagged, never dropped: it is the teacher's false negative that the student's self-correction targets.

Quality (documented so users can filter on it):
``quality = confidence * box_iou * fill_factor`` where ``box_iou`` is the IoU between the prompt box and
the mask's tight box (boxes are drawn tight, so a mask that does not reach its box edges is suspect),
and ``fill_factor`` halves the score of a mask that fills its whole box (the degenerate answer every
box-supervised method must beat). An empty mask scores 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import binary_fill_holes

from weakseg.annotations.masks import box_of
from weakseg.teachers.base import PseudoMask, TeacherOutput

#: A mask covering at least this fraction of its box is treated as "the box itself".
FULL_BOX_FILL = 0.98


@dataclass(frozen=True)
class RefineConfig:
    box_margin: int = 0  # clip to the box dilated by this many pixels
    min_area: int = 10  # drop components smaller than this (unless that would empty the mask)
    fill_holes: bool = True


def box_slices(
    box: tuple[float, float, float, float], shape: tuple[int, int], margin: int = 0
) -> tuple[slice, slice]:
    """Integer row/column slices covering a half-open float box, dilated and clipped to the image."""
    h, w = shape
    x0, y0, x1, y1 = box
    c0 = max(0, int(np.floor(x0)) - margin)
    r0 = max(0, int(np.floor(y0)) - margin)
    c1 = min(w, int(np.ceil(x1)) + margin)
    r1 = min(h, int(np.ceil(y1)) + margin)
    return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))


def refine(output: TeacherOutput, box: tuple[float, float, float, float], config: RefineConfig) -> PseudoMask:
    """Post-process one teacher mask and score it."""
    shape = output.mask.shape
    rows, cols = box_slices(box, shape, config.box_margin)
    crop = np.zeros(shape, dtype=bool)
    crop[rows, cols] = output.mask[rows, cols]
    local = crop[rows, cols]
    if local.any():
        local = _drop_specks(local, config.min_area)
        if config.fill_holes:
            local = binary_fill_holes(local)
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = local
    return score(mask, box, output.confidence)


def score(mask: np.ndarray, box: tuple[float, float, float, float], confidence: float) -> PseudoMask:
    """Quality of a (refined) mask for its prompt box; see the module docstring."""
    x0, y0, x1, y1 = box
    box_area = max((x1 - x0) * (y1 - y0), 1e-6)
    area = int(mask.sum())
    confidence = float(np.clip(confidence, 0.0, 1.0))
    if area == 0:
        return PseudoMask(mask, 0.0, confidence, 0.0, 0.0, True)
    fill = min(area / box_area, 1.0)
    tight = box_of(mask)
    assert tight is not None
    iou = _box_iou(box, tight)
    fill_factor = 0.5 if fill >= FULL_BOX_FILL else 1.0
    quality = float(np.clip(confidence * iou * fill_factor, 0.0, 1.0))
    return PseudoMask(mask, quality, confidence, float(fill), float(iou), False)


def _drop_specks(mask: np.ndarray, min_area: int) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= min_area) + 1
    if len(keep) == 0:  # everything is small: keep the largest piece rather than emptying the mask
        keep = np.array([int(np.argmax(areas)) + 1])
    return np.isin(labels, keep)


def _box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
