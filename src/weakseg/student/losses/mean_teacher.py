"""BoxTeacher's pseudo-mask losses for a semantic student (METHODS.md sections 2.3 and 2.4 c, d).

A mean teacher (an EMA copy of the student, see :mod:`weakseg.training.mean_teacher`) predicts a
foreground probability inside every box; this module turns that into per-instance pseudo-masks and
trains the student on them:

* :func:`teacher_pseudo_masks` - ``m_k = p_T > threshold`` inside box k, and the mask-aware confidence
  ``s_k = sqrt(mean of p_T over m_k)``. BoxTeacher weighs a pseudo-mask by ``sqrt(sqrt(c) * m_bar)``
  (code) or ``sqrt(c * m_bar)`` (paper), ``c`` being the detector's score. Here the box is given, not
  detected, so ``c = 1`` and both read ``sqrt(m_bar)``. An empty mask gets ``s = 0``: its instance keeps
  only the box terms.
* :func:`noise_aware_pixel_loss` - ``sum_k s_k Dice(p_k, m_k) / N_valid``.
* :func:`noise_reduced_affinity_loss` - pairwise "same label" log-likelihood on the dilated 3 x 3 graph,
  on the edges whose (smoothed) pseudo-mask affinity is at least 0.5, weighted by ``s_k``.
* :func:`mean_teacher_loss` - the above for a batch: instances from ``batch['boxes']``, student and
  teacher foreground on the same stride-4 grid as the BoxInst box terms.

The student predicts one semantic map, not one mask per instance, so instance k sees the map inside
its own box only (the pixel term clips ``p`` to the box); outside the boxes the offline pseudo-labels
already say background. Foreground is the binary head's when the model has one, else
``1 - p(background)`` of the fine head: the same map :class:`~.combined.StudentLoss` puts the box terms
on, so box and pseudo-mask terms pull on one map.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from weakseg.student.losses.box_supervision import (
    _neighbour_valid,
    _neighbours,
    box_grid_size,
    foreground_logits,
    rasterise_boxes,
)
from weakseg.student.losses.self_correction import IGNORE_INDEX

#: Dice smoothing of BoxTeacher's ``dice_coefficient``.
DICE_EPS = 1e-5


def teacher_pseudo_masks(prob: Tensor, box_masks: Tensor, threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    """Pseudo-masks and their mask-aware confidence from the teacher's foreground probability.

    Args:
        prob: teacher foreground probability per instance ``[M, h, w]`` (its image's map).
        box_masks: bool ``[M, h, w]``, the instance's box.
        threshold: BoxTeacher's 0.5.

    Returns:
        ``masks`` bool ``[M, h, w]`` (inside the box only) and ``confidence`` ``[M]``:
        ``sqrt(sum(p * m) / (sum(m) + 1e-6))``, 0 for an empty mask.
    """
    masks = (prob > threshold) & box_masks
    m = masks.to(prob.dtype)
    mean_fg = (prob * m).flatten(1).sum(1) / (m.flatten(1).sum(1) + 1e-6)
    return masks, mean_fg.clamp(min=0.0).sqrt()


def _n_valid(confidence: Tensor) -> Tensor:
    return (confidence > 0).sum().clamp(min=1).to(confidence.dtype)


def dice_loss(prob: Tensor, target: Tensor, eps: float = DICE_EPS) -> Tensor:
    """Per-instance ``1 - 2 sum(pt) / (sum(p^2) + sum(t^2) + eps)`` over ``[M, h, w]`` -> ``[M]``."""
    p, t = prob.flatten(1), target.to(prob.dtype).flatten(1)
    return 1.0 - 2.0 * (p * t).sum(1) / ((p * p).sum(1) + (t * t).sum(1) + eps)


def noise_aware_pixel_loss(prob: Tensor, masks: Tensor, box_masks: Tensor, confidence: Tensor) -> Tensor:
    """``sum_k s_k Dice(p_k, m_k) / N_valid`` with ``N_valid = #{s_k > 0}`` (at least 1).

    ``p_k`` is the student's foreground ``prob`` ``[M, h, w]`` clipped to box k: outside it the map
    belongs to other instances or to the offline labels. Instances with ``s_k = 0`` add nothing, and
    do not dilute the mean (BoxTeacher's ``FIX_REDUCTION``).
    """
    if prob.shape[0] == 0:
        return prob.sum() * 0.0
    dice = dice_loss(prob * box_masks.to(prob.dtype), masks)
    s = confidence.to(dice.dtype)
    return (s * dice).sum() / _n_valid(s)


def smooth_pseudo_masks(masks: Tensor) -> Tensor:
    """``m' = (m + AvgPool3x3(m)) / 2`` (zero padding), float ``[M, h, w]``."""
    m = masks.to(torch.float32).unsqueeze(1)
    return ((m + F.avg_pool2d(m, 3, stride=1, padding=1)) / 2)[:, 0]


def pseudo_affinity_weights(
    masks: Tensor,
    box_masks: Tensor,
    size: int = 3,
    dilation: int = 2,
    threshold: float = 0.5,
) -> Tensor:
    """Edge weights ``w_ij = 1[A_ij >= threshold] * B_i`` on the dilated graph: ``[M, K, h, w]``.

    ``A_ij = m'_i m'_j + (1 - m'_i)(1 - m'_j)`` on the smoothed masks (:func:`smooth_pseudo_masks`);
    edges to neighbours outside the image get 0. Since ``A - 1/2 = 2 (m'_i - 1/2)(m'_j - 1/2)``, at the
    threshold 0.5 an edge is kept when both ends lie on the same side of 1/2. For binary masks the
    smoothing never moves a pixel across 1/2 (``m' >= 5/9`` on the mask, ``<= 4/9`` off it), so there
    the weights are ``1[m_i == m_j]``; it matters for soft masks, where an isolated weak pixel is
    pulled to its surroundings.
    """
    smooth = smooth_pseudo_masks(masks).unsqueeze(1)  # [M, 1, h, w]
    neigh = _neighbours(smooth, size, dilation)[:, 0]  # [M, K, h, w]
    affinity = smooth * neigh + (1 - smooth) * (1 - neigh)
    valid = _neighbour_valid(smooth, size, dilation)
    return ((affinity >= threshold) & valid & box_masks.unsqueeze(1)).to(torch.float32)


def noise_reduced_affinity_loss(
    logits: Tensor,
    masks: Tensor,
    box_masks: Tensor,
    confidence: Tensor,
    size: int = 3,
    dilation: int = 2,
    threshold: float = 0.5,
) -> Tensor:
    """``sum_k s_k l_k / N_valid``, ``l_k = sum_ij w_ij (-log P_ij) / max(sum_ij w_ij, 1)``.

    ``P_ij = p_i p_j + (1 - p_i)(1 - p_j)`` from the student's foreground ``logits`` ``[M, h, w]``
    (log-space, finite for saturated logits), ``w_ij`` from :func:`pseudo_affinity_weights`. Unlike the
    BoxInst colour term it needs no image: the teacher's mask says which neighbours share a label, so
    it also works on grey, low-contrast surfaces where the colour prior keeps few edges.
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    z = logits.unsqueeze(1)
    log_fg, log_bg = F.logsigmoid(z), F.logsigmoid(-z)
    log_fg_j = _neighbours(log_fg, size, dilation)[:, 0]
    log_bg_j = _neighbours(log_bg, size, dilation)[:, 0]
    log_same = torch.logaddexp(log_fg + log_fg_j, log_bg + log_bg_j)  # [M, K, h, w]
    weight = pseudo_affinity_weights(masks, box_masks, size, dilation, threshold).to(log_same.dtype)
    per_instance = (-log_same * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp(min=1.0)
    s = confidence.to(per_instance.dtype)
    return (s * per_instance).sum() / _n_valid(s)


def uncertain_boxes(
    box_masks: Tensor, owner: Tensor, target: Tensor, correctable: Tensor | None, ignore_index: int
) -> Tensor:
    """Bool ``[M]``: whether most of a box lies where the offline label may be wrong or is missing.

    That is the ``correctable`` map (inside a teacher's pseudo-mask box) or an ignored label (a box
    whose teacher mask failed, or that has none: exactly where online masks help most). A box with a
    human mask is certain throughout and gets no pseudo-mask. Without ``correctable`` every box counts.
    """
    if correctable is None:
        return torch.ones(box_masks.shape[0], dtype=torch.bool, device=box_masks.device)
    open_ = (correctable.bool() | (target == ignore_index)).to(torch.float32).unsqueeze(1)
    share = F.adaptive_avg_pool2d(open_.to(box_masks.device), tuple(box_masks.shape[-2:]))[:, 0]
    inside = box_masks.to(share.dtype)
    return (share[owner] * inside).flatten(1).sum(1) > 0.5 * inside.flatten(1).sum(1)


def instance_boxes(
    boxes: list[Tensor | None], image_size: tuple[int, int], grid: tuple[int, int], device: torch.device
) -> tuple[Tensor, Tensor]:
    """Every box of the batch on ``grid`` (bool ``[M, h, w]``) and its image (long ``[M]``); boxes
    that cover no cell are dropped."""
    masks, owner = [], []
    for i, item in enumerate(boxes):
        if item is None or item.numel() == 0:
            continue
        m = rasterise_boxes(item.to(device), image_size, grid)
        m = m[m.flatten(1).any(dim=1)]
        masks.append(m)
        owner.append(torch.full((m.shape[0],), i, dtype=torch.long, device=device))
    if not masks:
        return torch.zeros((0, *grid), dtype=torch.bool, device=device), torch.zeros(
            0, dtype=torch.long, device=device
        )
    return torch.cat(masks), torch.cat(owner)


def mean_teacher_loss(
    student: dict[str, Tensor],
    teacher: dict[str, Tensor],
    batch: dict[str, Any],
    *,
    ramp: float,
    mask_threshold: float = 0.5,
    pixel_weight: float = 0.5,
    affinity_weight: float = 0.1,
    affinity_threshold: float = 0.5,
    size: int = 3,
    dilation: int = 2,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[Tensor, dict[str, float]]:
    """``ramp * (pixel_weight * L_pix + affinity_weight * L_aff)`` over the batch's uncertain boxes.

    Args:
        student: the student's logits (``fine``, optional ``binary``), with grad.
        teacher: the teacher's logits for the same inputs (no grad needed; detached here).
        batch: ``boxes`` (B items ``[N_i, 4]`` canvas pixels), ``target`` ``[B, H, W]``, optional
            ``correctable`` ``[B, H, W]`` and ``image`` (its size is the canvas; else the target's).
        ramp: the linear warm-up factor in ``[0, 1]``.

    Returns:
        ``(loss, logs)``; ``logs`` holds ``loss_mt_pix``, ``loss_mt_aff``, ``mt_confidence`` (mean ``s``
        over the instances, zeros included) and ``mt_instances``; it is empty when the batch has no
        uncertain box (the loss is then a zero attached to the graph).
    """
    fine = student["fine"]
    target = batch["target"]
    ref = batch.get("image")
    ref = target if ref is None else ref
    image_size = (int(ref.shape[-2]), int(ref.shape[-1]))
    grid = box_grid_size(image_size, fine.shape[-2:])
    fg = foreground_logits(student, grid)
    zero = fg.sum() * 0.0
    boxes = batch.get("boxes")
    if boxes is None:
        return zero, {}
    box_masks, owner = instance_boxes(boxes, image_size, grid, fine.device)
    keep = uncertain_boxes(box_masks, owner, target.to(fine.device), batch.get("correctable"), ignore_index)
    box_masks, owner = box_masks[keep], owner[keep]
    if box_masks.shape[0] == 0:
        return zero, {}
    with torch.no_grad():
        teacher_prob = torch.sigmoid(foreground_logits(teacher, grid).detach().float())[owner]
        masks, confidence = teacher_pseudo_masks(teacher_prob, box_masks, mask_threshold)
    student_logits = fg[owner]
    loss_pix = noise_aware_pixel_loss(torch.sigmoid(student_logits), masks, box_masks, confidence)
    loss_aff = noise_reduced_affinity_loss(
        student_logits, masks, box_masks, confidence, size, dilation, affinity_threshold
    )
    total = zero + ramp * (pixel_weight * loss_pix + affinity_weight * loss_aff)
    logs = {
        "loss_mt_pix": float(loss_pix.detach()),
        "loss_mt_aff": float(loss_aff.detach()),
        "mt_confidence": float(confidence.mean()),
        "mt_instances": float(box_masks.shape[0]),
    }
    return total, logs
