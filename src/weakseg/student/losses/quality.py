"""Per-instance quality weights as per-pixel weight maps (BoxTeacher / BoxSeg, METHODS.md 2.3, 3.2).

BoxTeacher and BoxSeg weight each pseudo mask's loss by a quality score ``s`` (mask-aware score, or
BoxSeg's fused-mask score), and give ``s = 0`` to boxes without a usable pseudo mask. A semantic
student has one loss map per image, so the per-instance scores are painted into a per-pixel map that
multiplies the per-pixel CE (see :func:`weakseg.student.losses.noise_robust.weighted_ce`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor


def instance_weight_map(
    instance_masks: Tensor,
    weights: Tensor,
    background_weight: float = 1.0,
    overlap: Literal["max", "min", "mean"] = "max",
) -> Tensor:
    """Paint per-instance weights into an ``[H, W]`` map.

    Args:
        instance_masks: boolean ``[N, H, W]`` pixel masks of the instances (pseudo masks, or boxes when
            the weight should cover the whole box).
        weights: ``[N]`` quality scores, usually in ``[0, 1]``; 0 switches the pixels' loss off.
        background_weight: weight of pixels covered by no instance. Background is not pseudo-labelled
            by a teacher, so its weight does not come from a quality score (default 1).
        overlap: how overlapping instances combine. ``max`` (default) trusts the best mask covering a
            pixel; ``min`` is the conservative choice; ``mean`` averages.

    Returns:
        float32 ``[H, W]``.
    """
    if instance_masks.ndim != 3 or weights.shape != instance_masks.shape[:1]:
        raise ValueError(f"masks {tuple(instance_masks.shape)} and weights {tuple(weights.shape)} mismatch")
    h, w = instance_masks.shape[-2:]
    out = torch.full((h, w), float(background_weight), dtype=torch.float32, device=instance_masks.device)
    if instance_masks.shape[0] == 0:
        return out
    masks = instance_masks.bool()
    wts = weights.to(device=masks.device, dtype=torch.float32).view(-1, 1, 1)
    covered = masks.any(dim=0)
    if overlap == "max":
        painted = torch.where(masks, wts, torch.tensor(float("-inf"), device=masks.device)).amax(dim=0)
    elif overlap == "min":
        painted = torch.where(masks, wts, torch.tensor(float("inf"), device=masks.device)).amin(dim=0)
    elif overlap == "mean":
        count = masks.sum(dim=0).clamp(min=1)
        painted = (masks.float() * wts).sum(dim=0) / count
    else:
        raise ValueError(f"unknown overlap rule {overlap!r}")
    return torch.where(covered, painted, out)
