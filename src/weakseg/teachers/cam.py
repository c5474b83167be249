"""Class activation maps from image-level tags: the formulas, on tensors (METHODS.md 4.2-4.3).

Notation: ``A`` is one layer's activation ``[K, h, w]`` (channels first, one image), ``g`` the gradient
of the class logit ``y_c`` (before the sigmoid) with respect to ``A``, same shape. Every map is
``[h, w]``, non-negative; :func:`normalise` scales one by its maximum.

* CAM (global average pooling + one linear layer): ``M = ReLU(Σ_k W[c, k] A_k)``.
* Grad-CAM: ``α_k = mean_ij g_k``; ``M = ReLU(Σ_k α_k A_k)``.
* Grad-CAM++: ``a_kij = g² / (2 g² + Σ_ab A_kab · g³)`` (0 where the denominator is 0),
  ``w_k = Σ_ij a_kij ReLU(g_kij)``, ``M = ReLU(Σ_k w_k A_k)``.
* LayerCAM: ``M = ReLU(Σ_k ReLU(g_kij) A_kij)``, per location; shallow layers are rescaled with
  ``tanh(γ M / max M)`` before fusing layers by the element-wise maximum.
* Filter-guided backpropagation (FGBP): the per-pixel gradient energy ``E = ||g_ij||₂`` over channels,
  optionally smoothed, is thresholded at its ``q``-th percentile inside the image; the gradient is kept
  only where ``E`` reaches it: the pixels the class logit is most sensitive to, at a resolution where
  a thin defect is still several pixels wide. The filtered gradient weighs the activation like
  LayerCAM's.
* Region-aware weighting: the fine maps are multiplied by a coarse region prior ``R`` (the
  deep-layer Grad-CAM) raised to ``β``: high-resolution gradient detail survives only inside the
  region the classifier attends to, which is what keeps the periodic texture of a surface out.

No model is imported here: the teacher that runs a classifier and calls these lives above this layer
(:mod:`weakseg.inference.cam_teacher`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: LayerCAM's rescaling of shallow-layer maps, ``tanh(γ M / max M)`` (the LayerCAM paper's γ).
LAYERCAM_GAMMA = 2.0


def normalise(m: Tensor) -> Tensor:
    """Scale a non-negative map to ``[0, 1]`` by its maximum (an all-zero map stays zero)."""
    peak = m.max()
    return m / peak if float(peak) > 0 else torch.zeros_like(m)


def class_activation_map(activation: Tensor, fc_weight: Tensor, class_index: int) -> Tensor:
    """CAM: ``ReLU(Σ_k W[c, k] A_k)`` for a GAP + linear classifier (``fc_weight`` ``[C, K]``)."""
    return F.relu(torch.einsum("k,khw->hw", fc_weight[class_index], activation))


def grad_cam(activation: Tensor, grad: Tensor) -> Tensor:
    """Grad-CAM: channel weights are the spatially averaged gradients."""
    alpha = grad.mean(dim=(1, 2))
    return F.relu(torch.einsum("k,khw->hw", alpha, activation))


def grad_cam_pp(activation: Tensor, grad: Tensor) -> Tensor:
    """Grad-CAM++ (exponential-score form: the powers of ``g`` stand for the higher derivatives)."""
    g2, g3 = grad.pow(2), grad.pow(3)
    denominator = 2 * g2 + activation.sum(dim=(1, 2), keepdim=True) * g3
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    a = torch.where(denominator != 0, g2 / safe, torch.zeros_like(g2))
    weights = (a * F.relu(grad)).sum(dim=(1, 2))
    return F.relu(torch.einsum("k,khw->hw", weights, activation))


def layer_cam(activation: Tensor, grad: Tensor) -> Tensor:
    """LayerCAM: every location weighs its own activation by its own positive gradient."""
    return F.relu((F.relu(grad) * activation).sum(dim=0))


def tanh_rescale(m: Tensor, gamma: float = LAYERCAM_GAMMA) -> Tensor:
    """LayerCAM's rescaling of a shallow-layer map: ``tanh(γ M / max M)``."""
    peak = m.max()
    return torch.tanh(gamma * m / peak) if float(peak) > 0 else torch.zeros_like(m)


def gradient_energy(grad: Tensor) -> Tensor:
    """Per-pixel L2 norm of the gradient over channels: ``[K, h, w]`` -> ``[h, w]``."""
    return grad.pow(2).sum(dim=0).sqrt()


def _gaussian_smooth(m: Tensor, sigma: float) -> Tensor:
    radius = max(1, round(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=m.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    out = F.conv2d(F.pad(m[None, None], (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return out[0, 0]


def fgbp_keep(grad: Tensor, percentile: float, smooth_sigma: float = 0.0) -> Tensor:
    """FGBP's filter: the pixels whose (smoothed) gradient energy reaches the image's ``percentile``.

    ``percentile`` in ``[0, 100)``; 0 keeps every pixel (no filtering). A pixel with zero energy is
    never kept: a gradient that is not there carries no evidence, whatever the percentile.
    """
    if not 0.0 <= percentile < 100.0:
        raise ValueError(f"percentile must be in [0, 100), got {percentile}")
    energy = gradient_energy(grad)
    if smooth_sigma > 0:
        energy = _gaussian_smooth(energy, smooth_sigma)
    if percentile == 0:
        return energy > 0
    cut = torch.quantile(energy.flatten().double(), percentile / 100.0).to(energy.dtype)
    return (energy >= cut) & (energy > 0)


def fgbp_map(activation: Tensor, grad: Tensor, percentile: float, smooth_sigma: float = 0.0) -> Tensor:
    """The filtered gradient as LayerCAM's weight: ``ReLU(Σ_k F_kij A_kij)`` with ``F = g · keep``."""
    keep = fgbp_keep(grad, percentile, smooth_sigma)
    return layer_cam(activation, grad * keep)


def region_aware(region: Tensor, maps: Sequence[Tensor], power: float = 1.0, gamma: float = 0.0) -> Tensor:
    """``normalise(R^β ⊙ mean_l s(M_l))``, every map at the region's size, with ``s`` the LayerCAM
    rescaling ``tanh(γ M / max M)`` (``γ = 0``: ``M / max M``). ``β = 0``: no region weighting."""
    if not maps:
        raise ValueError("region-aware weighting needs at least one fine map")
    fine = torch.stack([tanh_rescale(m, gamma) if gamma > 0 else normalise(m) for m in maps]).mean(dim=0)
    prior = normalise(region).pow(power) if power > 0 else torch.ones_like(region)
    return normalise(prior * fine)


def resize_map(m: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of an ``[h, w]`` map."""
    if tuple(m.shape[-2:]) == tuple(size):
        return m
    return F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
