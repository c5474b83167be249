"""One-sided online self-correction of pseudo labels (Boxes2Pixels, METHODS.md section 1.4).

Box-derived pseudo masks mostly err by *missing* defect pixels (a mask that is too tight, a thin crack
the teacher lost), so the student is allowed to claim background pixels it is confident about as defect.
The correction is one-sided on purpose: defect pixels are never relaxed to background and defect
classes are never swapped, because that direction would let the student erase its own supervision.
"""

from __future__ import annotations

import torch
from torch import Tensor

from weakseg.data.preprocess import IGNORE_INDEX


@torch.no_grad()
def self_correct(
    logits_fine: Tensor,
    target: Tensor,
    tau: float,
    ignore_index: int = IGNORE_INDEX,
    allowed: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Relabel confidently-predicted-defect background pixels to the predicted class.

    Args:
        logits_fine: fine-head logits ``[B, C, H, W]`` (class 0 is background).
        target: pseudo labels ``[B, H, W]`` (long), ``ignore_index`` for unsupervised pixels.
        tau: confidence threshold on the softmax maximum (strictly greater than).
        ignore_index: kept untouched (it is never 0, so it is never a candidate).
        allowed: optional boolean ``[B, H, W]``: where a teacher may have missed defect (inside the
            boxes of pseudo-masks). Background known for certain (defect-free images, outside every
            box, human masks) must never be relabelled.

    Returns:
        ``(corrected_target, relabel_mask)``: a new long tensor (the input is not modified) and the
        boolean mask ``D = [p_max > tau] & [y == 0] & [argmax > 0]`` of relabelled pixels.

    Runs under ``no_grad``: the corrected label is a target, and gradients through the argmax would be
    meaningless anyway.
    """
    if logits_fine.shape[-2:] != target.shape[-2:] or logits_fine.shape[0] != target.shape[0]:
        raise ValueError(f"logits {tuple(logits_fine.shape)} and target {tuple(target.shape)} do not match")
    prob = torch.softmax(logits_fine.detach().float(), dim=1)
    p_max, c_hat = prob.max(dim=1)
    relabel = (p_max > tau) & (target == 0) & (c_hat > 0)
    if allowed is not None:
        relabel &= allowed.to(relabel.device).bool()
    corrected = torch.where(relabel, c_hat.to(target.dtype), target)
    return corrected, relabel
