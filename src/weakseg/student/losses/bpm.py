"""Boundary-Preserving Map (BPM) loss weights (Noisy Boundaries, CVPR 2022; METHODS.md section 5.3).

Definition used here (per image, which plays the role of the paper's per-RoI map):

1. ``L = |K * p|`` with the 3x3 Laplacian ``K`` (centre 8, the 8 neighbours -1), zero padding, where
   ``p`` is the *predicted* foreground probability (``sigmoid(z)``; for the multi-class fine head,
   ``1 - softmax(z)[background]``).
2. ``W = mean_weight * L / mean(L)`` (mean 3 per image), clipped to ``max_weight`` (10), and detached.
3. ``loss = mean(W * BCE(z, y))`` with the BCE computed with ``reduction='none'``.

Why the weights peak *beside* the boundary and not on it: across a smooth edge ``p`` follows a sigmoid;
its second derivative is ~0 in flat regions and exactly 0 at the inflection point ``p = 0.5`` (the
predicted boundary), and largest on the two shoulders just inside and just outside. Learning therefore
concentrates on the boundary band without hard-fitting the exact, noisy boundary pixel.

Two fixes over the released code: the reference multiplies ``W`` with an already-averaged BCE (so the
map is only a constant factor 3, no spatial re-weighting); here the BCE is per pixel. And ``mean(L) = 0``
(a constant or saturated prediction) would divide by zero; then ``W = 1`` everywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from weakseg.student.losses.noise_robust import weighted_ce
from weakseg.student.losses.self_correction import IGNORE_INDEX


def _laplacian_abs(prob: Tensor) -> Tensor:
    """``|K * p|`` for ``p`` of shape ``[B, H, W]`` (zero padding), float32."""
    kernel = -torch.ones((1, 1, 3, 3), dtype=torch.float32, device=prob.device)
    kernel[0, 0, 1, 1] = 8.0
    return F.conv2d(prob.float().unsqueeze(1), kernel, padding=1).abs()[:, 0]


@torch.no_grad()
def boundary_preserving_map(
    prob: Tensor, mean_weight: float = 3.0, max_weight: float = 10.0, eps: float = 1e-6
) -> Tensor:
    """BPM weights ``[B, H, W]`` from a foreground probability map ``[B, H, W]`` (see module docstring).

    ``prob`` is normally the (detached) prediction. A hard binary map also works: its Laplacian marks the
    one-pixel bands on both sides of the edge (again not a single "on the boundary" line). Note that zero
    padding makes foreground touching the image border respond there too, as in the reference.
    Images whose Laplacian is (near) zero everywhere get ``W = 1``.
    """
    if prob.ndim != 3:
        raise ValueError(f"expected [B, H, W], got {tuple(prob.shape)}")
    lap = _laplacian_abs(prob)
    mean = lap.mean(dim=(1, 2), keepdim=True)
    flat = mean <= eps
    weights = (mean_weight * lap / mean.clamp(min=eps)).clamp(max=max_weight)
    return torch.where(flat, torch.ones_like(weights), weights)


def bpm_weighted_bce(
    logits: Tensor, target: Tensor, mean_weight: float = 3.0, max_weight: float = 10.0
) -> Tensor:
    """``mean(W * BCE(z, y))`` for binary logits ``[B, H, W]`` and a target in ``[0, 1]`` ``[B, H, W]``.

    ``W = boundary_preserving_map(sigmoid(z))``, detached; the BCE uses ``reduction='none'``.
    """
    weights = boundary_preserving_map(torch.sigmoid(logits.detach()), mean_weight, max_weight)
    bce = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    return (weights.to(bce.dtype) * bce).mean()


def fine_foreground_prob(logits_fine: Tensor) -> Tensor:
    """Any-defect probability ``1 - softmax(z)[:, 0]`` of a multi-class head ``[B, C, H, W]``."""
    return 1.0 - torch.softmax(logits_fine, dim=1)[:, 0]


def bpm_weighted_ce(
    logits: Tensor,
    target: Tensor,
    class_weights: Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    pixel_weights: Tensor | None = None,
    mean_weight: float = 3.0,
    max_weight: float = 10.0,
) -> Tensor:
    """Multi-class variant: :func:`weighted_ce` with the BPM map of the any-defect probability.

    The map multiplies the per-pixel loss (``reduction='none'`` semantics), on top of any
    ``pixel_weights`` (quality maps).
    """
    weights = boundary_preserving_map(fine_foreground_prob(logits.detach()), mean_weight, max_weight)
    if pixel_weights is not None:
        weights = weights * pixel_weights.to(weights.dtype)
    return weighted_ce(logits, target, class_weights, ignore_index=ignore_index, pixel_weights=weights)
