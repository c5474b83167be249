"""Noise-robust pixel losses of Boxes2Pixels (METHODS.md section 1.4).

* :func:`weighted_ce` - class-weighted cross-entropy with an **unweighted** mean over valid pixels.
* :func:`asymmetric_dice` - Tversky-like Dice on the binary (defect vs background) head that punishes
  false positives less than false negatives, because box pseudo masks under-segment defects.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from weakseg.student.losses.self_correction import IGNORE_INDEX


def weighted_ce(
    logits: Tensor,
    target: Tensor,
    class_weights: Tensor | None,
    ignore_index: int = IGNORE_INDEX,
    pixel_weights: Tensor | None = None,
) -> Tensor:
    """Mean over valid pixels of ``w[y] * pixel_weight * CE(logits, y)``.

    This is deliberately *not* ``F.cross_entropy(..., weight=w)``: PyTorch's weighted mean divides by
    ``sum(w[y])`` and so cancels the class weights' overall scale and re-normalises per batch (a batch
    of mostly background would be weighted like a batch of mostly defect). Boxes2Pixels computes
    ``reduction='none'`` then ``.mean()``; we do the same, dividing by the number of non-ignored pixels
    (identical to ``.mean()`` when no pixel is ignored).

    Args:
        logits: ``[B, C, H, W]``.
        target: ``[B, H, W]`` long, ``ignore_index`` for unsupervised pixels.
        class_weights: ``[C]`` or ``None`` (all ones).
        pixel_weights: optional ``[B, H, W]`` extra per-pixel weights (quality maps, BPM maps).

    Returns:
        A scalar; ``0`` (still attached to the graph) when no pixel is valid.
    """
    weight = None if class_weights is None else class_weights.to(device=logits.device, dtype=logits.dtype)
    per_pixel = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction="none")
    if pixel_weights is not None:
        per_pixel = per_pixel * pixel_weights.to(per_pixel.dtype)
    n_valid = (target != ignore_index).sum()
    return per_pixel.sum() / n_valid.clamp(min=1).to(per_pixel.dtype)


def asymmetric_dice(
    prob_fg: Tensor,
    target_fg: Tensor,
    beta: float = 0.4,
    eps: float = 1e-6,
    valid: Tensor | None = None,
) -> Tensor:
    """``1 - (I + eps) / (I + beta*FP + FN + eps)`` with sums over the **whole batch**.

    ``I = sum(p*t)``, ``FP = sum(p) - I``, ``FN = sum(t) - I``. Summing over the batch (not per image)
    keeps images without any defect from producing a loss of 1 for a nearly empty prediction. With
    ``beta < 1`` a false positive costs less than a false negative, so the binary head is pushed to
    recall defect pixels the pseudo masks missed.

    Args:
        prob_fg: foreground probabilities ``[B, H, W]``.
        target_fg: binary foreground target ``[B, H, W]`` (bool or float).
        valid: optional boolean ``[B, H, W]``; pixels outside it contribute nothing.
    """
    p = prob_fg.float()
    t = target_fg.to(p.dtype)
    if valid is not None:
        v = valid.to(p.dtype)
        p = p * v
        t = t * v
    inter = (p * t).sum()
    fp = p.sum() - inter
    fn = t.sum() - inter
    return 1.0 - (inter + eps) / (inter + beta * fp + fn + eps)


def binary_fg_prob(logits_binary: Tensor) -> Tensor:
    """Foreground probability ``softmax(z)[:, 1]`` of a two-channel binary head ``[B, 2, H, W]``."""
    if logits_binary.shape[1] != 2:
        raise ValueError(f"binary head must have 2 channels, got {logits_binary.shape[1]}")
    return torch.softmax(logits_binary, dim=1)[:, 1]


def class_dice(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX, eps: float = 1.0) -> Tensor:
    """Mean soft Dice loss over the defect classes present in the batch (sums over the whole batch).

    Cross-entropy is a mean over pixels: a class covering 0.2 % of them (Magnetic Tile's blowholes and
    cracks) moves it by almost nothing, whatever its weight, while a Dice term counts each class's
    overlap as a whole. Classes absent from the batch are left out (their false positives are the
    cross-entropy's business); no defect in the batch gives 0, still attached to the graph.
    """
    prob = torch.softmax(logits.float(), dim=1)
    valid = (target != ignore_index).unsqueeze(1).to(prob.dtype)
    classes = torch.arange(1, logits.shape[1], device=logits.device).view(1, -1, 1, 1)
    onehot = (target.unsqueeze(1) == classes).to(prob.dtype) * valid
    p = prob[:, 1:] * valid
    inter = (p * onehot).sum(dim=(0, 2, 3))
    total = p.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    present = onehot.sum(dim=(0, 2, 3)) > 0
    if not bool(present.any()):
        return logits.sum() * 0.0
    dice = 1.0 - (2.0 * inter + eps) / (total + eps)
    return dice[present].mean()
