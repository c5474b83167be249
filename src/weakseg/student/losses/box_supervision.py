"""BoxInst box-supervision losses as used by BoxTeacher (METHODS.md section 2.4 a, b).

* :func:`projection_loss` - the prediction's row/column max-projections must match the box's: every
  row and column of a box holds some foreground and nothing outside it does (box tightness prior).
* :func:`pairwise_affinity_loss` - neighbouring pixels of similar colour should share a label; this is
  what lets a box-supervised mask follow image edges.

Both run per instance on a stride-4 grid, as in BoxInst (:data:`BOX_GRID_STRIDE`): its pairwise size 3 /
dilation 2 and colour threshold were tuned there, and at stride 1 a dilation of 2 spans a quarter of the
distance. :func:`box_grid_size` picks the grid, :func:`to_box_grid` average-pools logits and images onto
it and :func:`rasterise_boxes` draws pixel boxes on it. The student predicts one semantic map, not one
mask per instance, so :func:`box_projection_loss` gives each instance the map restricted to its box
plus the pixels outside every box (see there).

Colour similarity (:func:`image_similarity`) is ``S_ij = exp(-theta * ||Lab_i - Lab_j||_2)`` with
``theta = 0.5`` per CIE-Lab unit, BoxInst's constant. With the edge threshold 0.3 an edge is kept when
``Delta E <= 2 ln(1/0.3) ~= 2.4``, which is about one just-noticeable colour difference, so edges only
connect pixels a person would call "the same colour". Grey-scale images go through the same Lab
conversion (``R = G = B``, so ``a = b = 0`` and only the lightness ``L*`` differs): one constant serves
both, and intensity differences are measured on a perceptual scale. Lower ``color_thresh`` (or ``theta``)
for low-contrast surfaces, where 0.3 keeps only very flat regions (METHODS.md section 2.7).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: BoxInst's colour-similarity constant (per CIE-Lab unit); see the module docstring.
LAB_THETA = 0.5

#: Input pixels per cell of the grid the box terms run on (BoxInst's mask stride).
BOX_GRID_STRIDE = 4

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
        box_mask: binary ``[N, H, W]``, or the number of boxes covering each pixel: BoxInst sums the
            loss over instances, and an edge whose centre lies in k boxes then counts k times, so one
            pass over the image's map with the count equals one pass per instance.
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
    box_weight = box_mask.to(log_same.dtype).unsqueeze(1)
    weight = ((similarity >= color_thresh) & valid).to(log_same.dtype) * box_weight
    return (-log_same * weight).sum() / weight.sum().clamp(min=1.0)


def box_grid_size(
    image_size: Sequence[int], logits_size: Sequence[int], stride: int = BOX_GRID_STRIDE
) -> tuple[int, int]:
    """``(h, w)`` of the grid the box terms run on: the logits' own grid when it is at ``stride`` or
    coarser, else the logits' grid pooled by the integer factor that brings it to ``stride``.

    Logits at input size (stride 1) on a 64 x 64 image give 16 x 16; at stride 2, 32 x 32 -> 16 x 16;
    at stride 4 or 8 they are used as they are. A size that is not a multiple of the factor rounds up.
    """
    grid = []
    for full, have in zip(image_size, logits_size, strict=True):
        factor = max(1, round(stride * int(have) / int(full)))  # logit cells per grid cell
        grid.append(math.ceil(int(have) / factor))
    return grid[0], grid[1]


def to_box_grid(x: Tensor, grid: Sequence[int]) -> Tensor:
    """Average-pool ``[N, C, H, W]`` logits or images onto ``grid`` (no-op when already there).

    Pooling logits (not probabilities) gives the logit a stride-4 head would produce for a smooth map,
    and spreads each cell's gradient evenly over the pixels under it.
    """
    if tuple(x.shape[-2:]) == tuple(grid):
        return x
    return F.adaptive_avg_pool2d(x, tuple(grid))


def rasterise_boxes(boxes: Tensor, image_size: Sequence[int], grid: Sequence[int]) -> Tensor:
    """Draw ``[M, 4]`` ``(x0, y0, x1, y1)`` half-open pixel boxes on ``grid``: bool ``[M, h, w]``.

    A cell is in a box when its centre is, as in BoxInst (which samples box masks at the centre of
    each stride-4 cell), so a box is not inflated by up to a cell on each side. A box narrower than a
    cell keeps the cell under its midpoint: thin defects (scratches, cracks) must not vanish. Boxes
    are clipped to the image; degenerate ones (no area left) get an all-False mask.
    """
    height, width = float(image_size[0]), float(image_size[1])
    gh, gw = int(grid[0]), int(grid[1])
    b = boxes.to(torch.float32).reshape(-1, 4)
    x0, x1 = b[:, 0].clamp(0, width), b[:, 2].clamp(0, width)
    y0, y1 = b[:, 1].clamp(0, height), b[:, 3].clamp(0, height)

    def axis(lo: Tensor, hi: Tensor, full: float, n: int) -> Tensor:
        cell = full / n
        centres = (torch.arange(n, dtype=torch.float32, device=b.device) + 0.5) * cell
        inside = (centres >= lo[:, None]) & (centres < hi[:, None])  # [M, n]
        mid = (((lo + hi) / 2) / cell).floor().clamp(0, n - 1).long()
        fallback = F.one_hot(mid, n).bool() & ~inside.any(dim=1, keepdim=True) & (hi > lo)[:, None]
        return inside | fallback

    rows, cols = axis(y0, y1, height, gh), axis(x0, x1, width, gw)
    return rows[:, :, None] & cols[:, None, :]


def box_projection_loss(fg_prob: Tensor, box_masks: Tensor, image_index: Tensor, eps: float = 1e-5) -> Tensor:
    """BoxInst projection loss per instance on a shared semantic map, mean over instances.

    BoxInst's instance mask covers the whole image, so foreground in the rows of one box and the
    columns of another (the cross region between two boxes) widens that instance's projections and
    is penalised; on the union of the boxes it never is. Here each instance sees ``fg_prob`` inside
    its own box and outside every box of its image; pixels of the image's other boxes belong to those
    instances and are left out, so a prediction that fills each box exactly scores zero.

    Args:
        fg_prob: foreground probability per image ``[B, h, w]``.
        box_masks: one box per instance on the same grid, bool ``[M, h, w]``.
        image_index: image of each instance, long ``[M]``.
    """
    if box_masks.shape[0] == 0:
        return fg_prob.sum() * 0.0
    covered = torch.zeros(fg_prob.shape, dtype=fg_prob.dtype, device=fg_prob.device)
    covered.index_add_(0, image_index, box_masks.to(fg_prob.dtype))
    own = box_masks | (covered[image_index] == 0)
    return projection_loss(fg_prob[image_index] * own.to(fg_prob.dtype), box_masks, eps)


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear ramp ``min(step / warmup_steps, 1)``; 1 when ``warmup_steps <= 0``.

    The pairwise loss is ramped in because early predictions are noise and strong affinity on noise
    collapses masks to all-background or all-box.
    """
    if warmup_steps <= 0:
        return 1.0
    return float(min(max(step, 0) / warmup_steps, 1.0))


def foreground_logits(outputs: dict[str, Tensor], grid: tuple[int, int]) -> Tensor:
    """Foreground logit ``[B, h, w]`` on the box grid: the binary head's if present, else the fine
    head's ``log(1 - p_bg) - log(p_bg)`` (``sigmoid`` of it is ``1 - softmax(fine)[0]``)."""
    binary = outputs.get("binary")
    if binary is not None:
        head = to_box_grid(binary, grid)
        return head[:, 1] - head[:, 0]
    head = to_box_grid(outputs["fine"], grid)
    return torch.logsumexp(head[:, 1:], dim=1) - head[:, 0]
