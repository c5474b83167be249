"""BoxInst box-supervision losses as used by BoxTeacher (METHODS.md section 2.4 a, b).

* :func:`projection_loss` - the prediction's row/column max-projections must match the box's: every
  row and column of a box holds some foreground and nothing outside it does (box tightness prior).
* :func:`pairwise_affinity_loss` - neighbouring pixels of similar colour should share a label; this is
  what lets a box-supervised mask follow image edges.

Colour similarity (:func:`image_similarity`) is ``S_ij = exp(-theta * ||Lab_i - Lab_j||_2)`` with
``theta = 0.5`` per CIE-Lab unit, BoxInst's constant. With the edge threshold 0.3 an edge is kept when
``Delta E <= 2 ln(1/0.3) ~= 2.4``, which is about one just-noticeable colour difference, so edges only
connect pixels a person would call "the same colour". Grey-scale images go through the same Lab
conversion (``R = G = B``, so ``a = b = 0`` and only the lightness ``L*`` differs): one constant serves
both, and intensity differences are measured on a perceptual scale. Lower ``color_thresh`` (or ``theta``)
for low-contrast surfaces, where 0.3 keeps only very flat regions (METHODS.md section 2.7).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: BoxInst's colour-similarity constant (per CIE-Lab unit); see the module docstring.
LAB_THETA = 0.5

# sRGB (D65) -> CIE XYZ, and the D65 reference white.
_RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_WHITE_D65 = (0.950456, 1.0, 1.088754)


def rgb_to_lab(image: Tensor) -> Tensor:
    """Convert sRGB ``[N, 3, H, W]`` in ``[0, 1]`` to CIE-Lab (``L*`` in 0..100), pure torch.

    Same formulas as ``skimage.color.rgb2lab`` (D65, 2 degree observer). Computed in float32.
    """
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"expected [N, 3, H, W], got {tuple(image.shape)}")
    rgb = image.float().clamp(0.0, 1.0)
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    matrix = torch.tensor(_RGB_TO_XYZ, dtype=lin.dtype, device=lin.device)
    white = torch.tensor(_WHITE_D65, dtype=lin.dtype, device=lin.device).view(1, 3, 1, 1)
    xyz = torch.einsum("ij,njhw->nihw", matrix, lin) / white
    delta = 6.0 / 29.0
    f = torch.where(xyz > delta**3, xyz.clamp(min=1e-12) ** (1.0 / 3.0), xyz / (3 * delta**2) + 4.0 / 29.0)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    lab = torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)
    return lab


def _neighbours(x: Tensor, size: int, dilation: int) -> Tensor:
    """Dilated ``size x size`` neighbourhood without its centre: ``[N, C, H, W] -> [N, C, K, H, W]``.

    ``K = size**2 - 1``; neighbours outside the image read as 0 (zero padding).
    """
    if size < 3 or size % 2 == 0:
        raise ValueError(f"size must be odd and >= 3, got {size}")
    n, c, h, w = x.shape
    pad = dilation * (size // 2)
    cols = F.unfold(x, kernel_size=size, dilation=dilation, padding=pad).view(n, c, size * size, h, w)
    centre = size * size // 2
    return torch.cat([cols[:, :, :centre], cols[:, :, centre + 1 :]], dim=2)


def _neighbour_valid(x: Tensor, size: int, dilation: int) -> Tensor:
    """Boolean ``[N, K, H, W]``: True where the neighbour lies inside the image (not padding)."""
    ones = torch.ones((1, 1, *x.shape[-2:]), dtype=torch.float32, device=x.device)
    return _neighbours(ones, size, dilation)[:, 0] > 0.5


def image_similarity(image: Tensor, size: int = 3, dilation: int = 2, theta: float = LAB_THETA) -> Tensor:
    """Colour similarity to each of the ``K = size**2 - 1`` dilated neighbours: ``[N, K, H, W]``.

    ``image`` is ``[N, 3, H, W]`` sRGB or ``[N, 1, H, W]`` grey, both in ``[0, 1]`` (un-normalised).
    Both are converted to Lab (grey as ``R = G = B``) and ``S = exp(-theta * ||Delta Lab||)``.
    Neighbours that fall outside the image get ``S = 0`` so no threshold ever keeps them.
    """
    if image.ndim != 4 or image.shape[1] not in (1, 3):
        raise ValueError(f"expected an image [N, 1 or 3, H, W], got {tuple(image.shape)}")
    rgb = image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
    lab = rgb_to_lab(rgb)
    diff = lab.unsqueeze(2) - _neighbours(lab, size, dilation)
    sim = torch.exp(-theta * diff.norm(dim=1))
    return sim * _neighbour_valid(image, size, dilation).to(sim.dtype)


def projection_loss(mask_prob: Tensor, box_mask: Tensor, eps: float = 1e-5) -> Tensor:
    """BoxInst projection loss: Dice on the x- and y-axis max-projections, mean over instances.

    ``Dice(a, b) = 1 - 2 sum(ab) / (sum(a^2) + sum(b^2) + eps)``. A prediction that equals the box mask
    (or any mask that touches every row and column of the box and nothing outside it) has zero loss.

    Args:
        mask_prob: foreground probabilities ``[N, H, W]`` (one map per instance or per image).
        box_mask: binary box masks ``[N, H, W]``.
    """
    if mask_prob.shape != box_mask.shape or mask_prob.ndim != 3:
        raise ValueError(f"shapes {tuple(mask_prob.shape)} and {tuple(box_mask.shape)} must be equal [N,H,W]")
    if mask_prob.shape[0] == 0:
        return mask_prob.sum() * 0.0
    box = box_mask.to(mask_prob.dtype)

    def dice(a: Tensor, b: Tensor) -> Tensor:
        return 1.0 - 2.0 * (a * b).sum(-1) / ((a * a).sum(-1) + (b * b).sum(-1) + eps)

    loss_x = dice(mask_prob.amax(dim=1), box.amax(dim=1))  # projection onto the x axis: [N, W]
    loss_y = dice(mask_prob.amax(dim=2), box.amax(dim=2))  # projection onto the y axis: [N, H]
    return (loss_x + loss_y).mean()


def pairwise_affinity_loss(
    mask_logits: Tensor,
    image: Tensor,
    box_mask: Tensor,
    size: int = 3,
    dilation: int = 2,
    color_thresh: float = 0.3,
) -> Tensor:
    """BoxInst pairwise loss ``sum_ij w_ij (-log P_ij) / max(sum_ij w_ij, 1)``.

    ``P_ij = p_i p_j + (1 - p_i)(1 - p_j)`` is the probability that pixels i and j share a label, computed
    as ``logaddexp(logsig(z_i) + logsig(z_j), logsig(-z_i) + logsig(-z_j))`` so it stays finite for
    saturated logits. Edges count (``w_ij = 1``) when the colour similarity is ``>= color_thresh`` and
    the centre pixel i lies in the box; outside boxes nothing is known about the colour/label relation.

    Args:
        mask_logits: foreground logits ``[N, H, W]``.
        image: either the image ``[N, 1 or 3, H, W]`` in ``[0, 1]`` (similarity computed here) or a
            precomputed similarity ``[N, size**2 - 1, H, W]`` from :func:`image_similarity`.
        box_mask: binary ``[N, H, W]``.
    """
    n_neigh = size * size - 1
    similarity = image if image.shape[1] == n_neigh else image_similarity(image, size, dilation)
    if similarity.shape[-2:] != mask_logits.shape[-2:] or box_mask.shape != mask_logits.shape:
        raise ValueError("mask_logits, image/similarity and box_mask must share N, H and W")
    z = mask_logits.unsqueeze(1)  # [N, 1, H, W]
    log_fg, log_bg = F.logsigmoid(z), F.logsigmoid(-z)
    log_fg_j = _neighbours(log_fg, size, dilation)[:, 0]
    log_bg_j = _neighbours(log_bg, size, dilation)[:, 0]
    log_same = torch.logaddexp(log_fg + log_fg_j, log_bg + log_bg_j)  # [N, K, H, W]
    valid = _neighbour_valid(mask_logits.unsqueeze(1), size, dilation)
    weight = ((similarity >= color_thresh) & valid & box_mask.bool().unsqueeze(1)).to(log_same.dtype)
    return (-log_same * weight).sum() / weight.sum().clamp(min=1.0)


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear ramp ``min(step / warmup_steps, 1)``; 1 when ``warmup_steps <= 0``.

    The pairwise loss is ramped in because early predictions are noise and strong affinity on noise
    collapses masks to all-background or all-box.
    """
    if warmup_steps <= 0:
        return 1.0
    return float(min(max(step, 0) / warmup_steps, 1.0))
