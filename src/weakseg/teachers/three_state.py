"""Three-state pseudo-masks from a score map: defect, background, and the pixels nobody can decide.

Numpy only, so that registering the tag teachers (:mod:`weakseg.inference.cam_teacher`) does not
import torch.
"""

from __future__ import annotations

import numpy as np


def three_state(heat: np.ndarray, fg_threshold: float, bg_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """``(defect, ignore)`` boolean maps: defect where ``heat > fg``, background where ``heat < bg``,
    ignored in between (the pixels a CAM cannot decide)."""
    if not 0.0 <= bg_threshold <= fg_threshold <= 1.0:
        raise ValueError(f"need 0 <= bg_threshold <= fg_threshold <= 1, got {bg_threshold}, {fg_threshold}")
    defect = heat > fg_threshold
    ignore = (heat >= bg_threshold) & ~defect
    return defect, ignore


def map_quality(heat: np.ndarray, defect: np.ndarray, probability: float) -> float:
    """How much a map separates its defect from the rest, times the classifier's belief in the tag:
    ``p_c · (mean heat in the defect - mean heat elsewhere)``, in ``[0, 1]``; 0 for an empty defect."""
    if not defect.any():
        return 0.0
    outside = heat[~defect]
    contrast = float(heat[defect].mean()) - (float(outside.mean()) if outside.size else 0.0)
    return float(np.clip(probability * contrast, 0.0, 1.0))
