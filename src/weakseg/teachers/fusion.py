"""``fusion``: several teachers' masks for the same box, fused by quality-weighted majority vote.

This is BoxSeg's multi-mask complementation (METHODS.md 3.2) with classical teachers as the
candidates: each candidate ``k`` is a refined binary mask ``B_k`` with its teacher confidence ``c_k``
and quality ``w_k``. The fused mask is ``M* = [sum_k w_k B_k / sum_k w_k > 0.5]``; its score is
BoxSeg's mask-quality score ``s = mean_k sqrt((c_k + 1) / 2 * a_k)`` with
``a_k = |B_k| * IoU(B_k, M*) / max(|M*|, 1)`` (the candidates are binary, so their summed soft
probability is their area; ``a_k`` is clamped to 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from weakseg.teachers.base import PseudoMask, Teacher, TeacherOutput, create_teacher, register_teacher
from weakseg.teachers.refine import RefineConfig, refine

DEFAULT_MEMBERS = ("contrast", "grabcut", "box")


@register_teacher("fusion", help="quality-weighted majority vote of several teachers (BoxSeg)")
class FusionTeacher(Teacher):
    def __init__(
        self,
        members: tuple[str, ...] | list[str] | str = DEFAULT_MEMBERS,
        member_configs: dict[str, dict[str, Any]] | None = None,
        vote_threshold: float = 0.5,
    ) -> None:
        if isinstance(members, str):
            members = tuple(m.strip() for m in members.split(",") if m.strip())
        members = tuple(members)
        if "fusion" in members or len(members) < 2:
            raise ValueError("fusion needs two or more member teachers, none of them 'fusion'")
        member_configs = member_configs or {}
        self.members = [create_teacher(name, **member_configs.get(name, {})) for name in members]
        self.vote_threshold = vote_threshold
        super().__init__(
            members=[m.config() for m in self.members],
            vote_threshold=vote_threshold,
        )

    def predict(self, image: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray) -> list[TeacherOutput]:
        fused = self._fuse(image, boxes, class_ids, RefineConfig())
        return [TeacherOutput(mask, score) for mask, score in fused]

    def label(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        class_ids: np.ndarray,
        refine_config: RefineConfig | None = None,
    ) -> list[PseudoMask]:
        """Fused, refined masks whose quality is BoxSeg's score (not the generic one)."""
        config = refine_config or RefineConfig()
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        results = []
        for (mask, score), box in zip(self._fuse(image, boxes, class_ids, config), boxes, strict=True):
            refined = refine(TeacherOutput(mask, score), tuple(box), config)
            refined.quality = 0.0 if refined.empty else score
            results.append(refined)
        return results

    def _fuse(
        self, image: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray, config: RefineConfig
    ) -> list[tuple[np.ndarray, float]]:
        candidates = [m.label(image, boxes, class_ids, config) for m in self.members]
        return [fuse_candidates([c[i] for c in candidates], self.vote_threshold) for i in range(len(boxes))]


def fuse_candidates(candidates: list[PseudoMask], vote_threshold: float = 0.5) -> tuple[np.ndarray, float]:
    """Quality-weighted vote over candidate masks and BoxSeg's score of the result."""
    weights = np.array([c.quality for c in candidates], dtype=float)
    if weights.sum() <= 0:
        return np.zeros_like(candidates[0].mask), 0.0
    votes = sum(w * c.mask.astype(float) for w, c in zip(weights, candidates, strict=True))
    fused = votes / weights.sum() > vote_threshold
    fused_area = int(fused.sum())
    if fused_area == 0:
        return fused, 0.0
    scores = []
    for cand in candidates:
        inter = int((cand.mask & fused).sum())
        union = int((cand.mask | fused).sum())
        iou = inter / union if union else 0.0
        a_k = min(1.0, int(cand.mask.sum()) * iou / max(fused_area, 1))
        scores.append(np.sqrt((cand.confidence + 1.0) / 2.0 * a_k))
    return fused, float(np.mean(scores))
