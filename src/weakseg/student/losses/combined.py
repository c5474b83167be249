"""The student's total loss (Boxes2Pixels ``HierarchicalLoss`` plus optional box and quality terms).

``L = w_bin * AsymDice(binary head, y > 0) + w_fine * WeightedCE(fine head, self_correct(y))
      [+ projection_weight * L_proj + pairwise_weight * ramp(step) * L_pair]``

* The binary target uses the **uncorrected** pseudo labels ``y > 0`` (METHODS.md 1.4): self-correction
  only touches the fine head.
* Self-correction is active iff ``tau`` is not None and ``epoch >= self_correction_warmup_epochs``.
* Logits coarser than the target (e.g. stride 4) are bilinearly upsampled to the target for the pixel
  losses. The box losses run per instance (``batch['boxes']``) on a stride-4 grid, as in BoxInst: logits
  finer than stride 4 are average-pooled to it, coarser ones are used as they are, and boxes and image
  are brought to that grid (see :mod:`.box_supervision` and :meth:`StudentLoss._box_terms`).
* A model without a binary head (``outputs['binary']`` missing or None, e.g. a baseline) gets the fine
  loss only, like the reference.
* Non-finite losses are **not** handled here: the returned total may be NaN/inf, and the trainer is
  expected to skip such a step (Boxes2Pixels counts and skips them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weakseg.student.losses.box_supervision import (
    box_grid_size,
    box_projection_loss,
    foreground_logits,
    image_similarity,
    pairwise_affinity_loss,
    rasterise_boxes,
    to_box_grid,
    warmup_factor,
)
from weakseg.student.losses.bpm import boundary_preserving_map, fine_foreground_prob
from weakseg.student.losses.noise_robust import asymmetric_dice, binary_fg_prob, class_dice, weighted_ce
from weakseg.student.losses.self_correction import IGNORE_INDEX, self_correct

#: Default class weights (Boxes2Pixels): background 0.4, every defect class 4.0.
DEFAULT_BACKGROUND_WEIGHT = 0.4
DEFAULT_DEFECT_WEIGHT = 4.0


@dataclass
class LossConfig:
    """Loss settings; defaults follow the Boxes2Pixels final runs (METHODS.md 1.4 / 1.5).

    ``class_weights=None`` means background 0.4 and 4.0 for every defect class (sized from the fine
    head). ``tau=None`` disables self-correction. ``image_mean``/``image_std`` undo an input
    normalisation before colour similarity (the pairwise loss wants images in ``[0, 1]``).
    ``pixel_weights`` from the batch are used only when ``use_quality`` is set.
    """

    w_bin: float = 0.5
    w_fine: float = 0.5
    class_weights: Sequence[float] | None = None
    tau: float | None = 0.9
    self_correction_warmup_epochs: int = 5
    dice_beta: float = 0.4
    dice_eps: float = 1e-6
    projection_weight: float = 0.0
    pairwise_weight: float = 0.0
    pairwise_warmup_steps: int = 1000
    pairwise_size: int = 3
    pairwise_dilation: int = 2
    color_thresh: float = 0.3
    use_quality: bool = False
    fine_dice_weight: float = 1.0  # + per-class soft Dice on the fine head (tiny classes count as whole)
    box_class_weight: float = 0.0  # + the box's class inside boxes the pixel loss ignores (experimental)
    use_bpm: bool = False
    bpm_max_weight: float = 10.0
    ignore_index: int = IGNORE_INDEX
    image_mean: Sequence[float] | None = None
    image_std: Sequence[float] | None = None


def _resize_logits(logits: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def _instance_box_masks(
    batch: dict[str, Any],
    batch_size: int,
    image_size: tuple[int, int],
    grid: tuple[int, int],
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """One box mask per instance on ``grid`` (bool ``[M, h, w]``) and the image of each (long ``[M]``).

    Reads ``batch['boxes']``: B items, each ``[N_i, 4]`` float ``(x0, y0, x1, y1)`` half-open in pixels
    of ``batch['image']`` (or None / ``[0, 4]`` for no boxes). Without it, the older ``box_masks`` is
    read: ``[B, N, H, W]`` or B items ``[N_i, H, W]`` give one instance per mask; a union ``[B, H, W]``
    (or an ``[H, W]`` item) is one instance per image, so the cross region between its boxes is not
    penalised, as before.
    """
    masks: list[Tensor] = []
    owner: list[Tensor] = []
    boxes = batch.get("boxes")
    source = boxes if boxes is not None else batch.get("box_masks")
    name = "boxes" if boxes is not None else "box_masks"
    if source is None:
        raise ValueError("the box terms need batch['boxes'] (or the older 'box_masks')")
    if len(source) != batch_size:
        raise ValueError(f"batch['{name}'] has {len(source)} items for a batch of {batch_size}")
    for i, item in enumerate(source):
        if item is None or item.numel() == 0:
            continue
        if boxes is not None:
            if item.ndim != 2 or item.shape[-1] != 4:
                raise ValueError(f"batch['boxes'][{i}] must be [N, 4], got {tuple(item.shape)}")
            m = rasterise_boxes(item.to(device), image_size, grid)
        else:
            m = item.bool().to(device)
            m = _downsample_mask(m if m.ndim == 3 else m[None], grid)
        m = m[m.flatten(1).any(dim=1)]  # degenerate boxes, empty masks
        masks.append(m)
        owner.append(torch.full((m.shape[0],), i, dtype=torch.long, device=device))
    if not masks:
        none = torch.zeros((0, *grid), dtype=torch.bool, device=device)
        return none, torch.zeros(0, dtype=torch.long, device=device)
    return torch.cat(masks), torch.cat(owner)


def _downsample_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Bool ``[B, H, W]`` to ``size``: a coarse pixel is in the box if any fine pixel is."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.interpolate(mask.float().unsqueeze(1), size=size, mode="area")[:, 0] > 0


class StudentLoss(nn.Module):
    """Total student loss; see the module docstring. Pure PyTorch, no trainer logic."""

    def __init__(self, config: LossConfig | None = None) -> None:
        super().__init__()
        self.config = config or LossConfig()

    def class_weights(self, num_classes: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The fine head's class weights as a tensor (default 0.4 for background, 4.0 for defects)."""
        cfg = self.config
        if cfg.class_weights is None:
            values = [DEFAULT_BACKGROUND_WEIGHT] + [DEFAULT_DEFECT_WEIGHT] * (num_classes - 1)
        else:
            values = list(cfg.class_weights)
            if len(values) != num_classes:
                raise ValueError(f"{len(values)} class weights for a fine head with {num_classes} classes")
        return torch.tensor(values, device=device, dtype=dtype)

    def self_correction_active(self, epoch: int) -> bool:
        """Self-correction runs after the warm-up, and only when ``tau`` is set."""
        return self.config.tau is not None and epoch >= self.config.self_correction_warmup_epochs

    def forward(
        self, outputs: dict[str, Tensor], batch: dict[str, Any], epoch: int, step: int
    ) -> tuple[Tensor, dict[str, float]]:
        """Compute the total loss.

        Args:
            outputs: ``binary`` ``[B, 2, h, w]`` logits (optional) and ``fine`` ``[B, C, h, w]`` logits.
            batch: ``target`` long ``[B, H, W]`` (255 = ignore); optional ``boxes`` (see
                :func:`_instance_box_masks`), ``pixel_weights`` ``[B, H, W]`` and ``image``
                ``[B, 1|3, H, W]``.
            epoch: current epoch (0-based), for the self-correction warm-up.
            step: global optimisation step, for the pairwise warm-up.

        Returns:
            ``(total, logs)``; ``total`` may be non-finite (the trainer skips such steps). ``logs`` holds
            floats: ``loss``, ``loss_bin``, ``loss_fine``, ``loss_proj``, ``loss_pair``,
            ``pairwise_ramp``, ``n_relabelled``.
        """
        cfg = self.config
        target: Tensor = batch["target"].long()
        size = (int(target.shape[-2]), int(target.shape[-1]))
        valid = target != cfg.ignore_index
        fine = outputs["fine"]
        binary = outputs.get("binary")
        fine_up = _resize_logits(fine, size)

        # Fine head: one-sided self-correction, then weighted CE with an unweighted pixel mean.
        fine_target = target
        n_relabelled = 0
        if self.self_correction_active(epoch):
            fine_target, relabel = self_correct(
                fine_up, target, float(cfg.tau), cfg.ignore_index, batch.get("correctable")
            )
            n_relabelled = int(relabel.sum())
        pixel_weights = None
        if cfg.use_quality:
            if batch.get("pixel_weights") is None:
                raise ValueError("use_quality is set but the batch has no 'pixel_weights'")
            pixel_weights = batch["pixel_weights"].to(fine_up.device, torch.float32)
        if cfg.use_bpm:
            bpm = boundary_preserving_map(
                fine_foreground_prob(fine_up.detach()), max_weight=cfg.bpm_max_weight
            )
            pixel_weights = bpm if pixel_weights is None else pixel_weights * bpm
        weights = self.class_weights(fine.shape[1], fine.device, fine_up.dtype)
        loss_fine = weighted_ce(fine_up, fine_target, weights, cfg.ignore_index, pixel_weights)
        total = cfg.w_fine * loss_fine
        logs: dict[str, float] = {"loss_fine": float(loss_fine.detach())}
        box_class = batch.get("box_class")
        if box_class is not None and fine.shape[1] > 2 and cfg.box_class_weight > 0:
            # Inside boxes the pixel loss ignores, the box still names the class: train the defect
            # classes' proportions there (the box terms decide defect vs background).
            inside = (box_class > 0) & (target == cfg.ignore_index)
            if bool(inside.any()):
                log_defect = torch.log_softmax(fine_up[:, 1:], dim=1)
                picked = log_defect.gather(1, (box_class.clamp(min=1) - 1).unsqueeze(1))[:, 0]
                loss_cls = -(picked[inside]).mean()
                total = total + cfg.box_class_weight * loss_cls
                logs["loss_box_class"] = float(loss_cls.detach())
        if cfg.fine_dice_weight > 0:
            loss_dice = class_dice(fine_up, fine_target, cfg.ignore_index)
            total = total + cfg.fine_dice_weight * loss_dice
            logs["loss_dice"] = float(loss_dice.detach())

        # Binary head: asymmetric Dice on the UNcorrected labels.
        if binary is not None:
            prob_fg = binary_fg_prob(_resize_logits(binary, size))
            loss_bin = asymmetric_dice(prob_fg, target > 0, cfg.dice_beta, cfg.dice_eps, valid=valid)
            total = total + cfg.w_bin * loss_bin
            logs["loss_bin"] = float(loss_bin.detach())

        # Box terms, per instance on a stride-4 grid, on images that have boxes.
        want_box = cfg.projection_weight > 0 or cfg.pairwise_weight > 0
        if want_box and (batch.get("boxes") is not None or batch.get("box_masks") is not None):
            total = total + self._box_terms(fine, binary, batch, size, step, logs)

        logs["n_relabelled"] = n_relabelled
        logs["loss"] = float(total.detach())
        return total, logs

    def _box_terms(
        self,
        fine: Tensor,
        binary: Tensor | None,
        batch: dict[str, Any],
        size: tuple[int, int],
        step: int,
        logs: dict[str, float],
    ) -> Tensor:
        """BoxInst projection and pairwise terms, per instance, on a stride-4 grid.

        Logits at input size (or stride 2) are average-pooled to stride 4 rather than the terms being
        computed on their own grid: BoxInst's pairwise size 3 / dilation 2 and colour threshold were
        tuned on stride-4 masks, and a dilation of 2 at stride 1 spans a quarter of that. Stride-4 or
        coarser logits are used as they are. Foreground outside every box is left to the pixel losses
        (the pseudo labels are background there) and to the projection term (see
        :func:`box_projection_loss`).
        """
        cfg = self.config
        image = batch.get("image")
        image_size = (int(image.shape[-2]), int(image.shape[-1])) if image is not None else size
        grid = box_grid_size(image_size, fine.shape[-2:])
        fg_logits = foreground_logits({"fine": fine, "binary": binary}, grid)
        masks, owner = _instance_box_masks(batch, fine.shape[0], image_size, grid, fine.device)
        extra = fg_logits.sum() * 0.0
        if masks.shape[0] == 0:
            return extra
        if cfg.projection_weight > 0:
            loss_proj = box_projection_loss(torch.sigmoid(fg_logits), masks, owner)
            extra = extra + cfg.projection_weight * loss_proj
            logs["loss_proj"] = float(loss_proj.detach())
        if cfg.pairwise_weight > 0:
            if image is None:
                raise ValueError("pairwise_weight > 0 needs the batch 'image' for colour similarity")
            idx = owner.unique()  # images with at least one box
            count = torch.zeros((fine.shape[0], *grid), dtype=fg_logits.dtype, device=fine.device)
            count.index_add_(0, owner, masks.to(fg_logits.dtype))  # boxes covering each cell
            image = image[idx].to(fine.device, torch.float32)
            if cfg.image_mean is not None and cfg.image_std is not None:
                mean = torch.tensor(cfg.image_mean, device=image.device).view(1, -1, 1, 1)
                std = torch.tensor(cfg.image_std, device=image.device).view(1, -1, 1, 1)
                image = image * std + mean
            with torch.no_grad():
                sim = image_similarity(to_box_grid(image, grid), cfg.pairwise_size, cfg.pairwise_dilation)
            loss_pair = pairwise_affinity_loss(
                fg_logits[idx], sim, count[idx], cfg.pairwise_size, cfg.pairwise_dilation, cfg.color_thresh
            )
            ramp = warmup_factor(step, cfg.pairwise_warmup_steps)
            extra = extra + cfg.pairwise_weight * ramp * loss_pair
            logs["loss_pair"] = float(loss_pair.detach())
            logs["pairwise_ramp"] = ramp
        return extra
