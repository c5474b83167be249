"""BoxTeacher's mean teacher for the semantic student (METHODS.md sections 2.3-2.5).

An EMA copy of the student's trainable part decodes the same (cached) backbone features as the
student, with no grad; inside every box whose offline label is uncertain its foreground becomes an
online pseudo-mask, weighted by its mask-aware confidence, and the student is trained on it with the
noise-aware pixel loss and the noise-reduced affinity loss (:mod:`weakseg.student.losses.mean_teacher`).
The offline teacher's masks start it: until ``start_epoch`` only they (and the box terms) train the
student, while the EMA already follows it, so the first online masks come from a student that has
learnt them.

The copy is a submodule of the Lightning module (``mean_teacher.model.*`` in the checkpoint), so
``--resume`` continues it; its parameters do not require grad and are not in the optimiser, and the
predictor, calibration and export read only ``model.*``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from weakseg.errors import WeaksegError
from weakseg.student.losses.box_supervision import warmup_factor
from weakseg.student.losses.mean_teacher import mean_teacher_loss
from weakseg.student.segmenter import Segmenter


@dataclass
class MeanTeacherConfig:
    """One switch (``enabled``) and BoxTeacher's settings, scaled to short CPU runs.

    * ``decay`` 0.99, not BoxTeacher's 0.999: with the ramp ``m_t = min(decay, 1 - 1/(t+1))`` the teacher
      is the plain mean of every student so far until ``t = 1/(1 - decay)``. At 0.999 that is the
      first 1000 steps, i.e. a whole ~1000-step CPU run, random start included; 0.99 averages over
      ~100 steps (BoxTeacher's 1000 of 90k iterations is ~1 % of its run; 100 is ~10 % of ours).
    * ``warmup_steps`` 300 for the linear ramp of both terms, from the step the teacher starts:
      BoxTeacher's 10k iterations would never finish in a ~1000-step run; 300 gives the EMA a few
      horizons to settle before the terms count fully.
    * ``start_epoch`` 1: one epoch on the offline masks alone before the online ones join.
    * ``mask_threshold``, ``pixel_weight``, ``affinity_weight`` and ``affinity_threshold``: BoxTeacher's
      0.5, 0.5, 0.1 and 0.5. The affinity graph is the loss section's ``pairwise_size`` /
      ``pairwise_dilation`` (3 x 3, dilation 2).
    """

    enabled: bool = False
    decay: float = 0.99
    start_epoch: int = 1
    warmup_steps: int = 300
    mask_threshold: float = 0.5
    pixel_weight: float = 0.5
    affinity_weight: float = 0.1
    affinity_threshold: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay < 1.0:
            raise WeaksegError(f"mean_teacher.decay must be in [0, 1), got {self.decay}")
        if not 0.0 < self.mask_threshold < 1.0:
            raise WeaksegError(f"mean_teacher.mask_threshold must be in (0, 1), got {self.mask_threshold}")
        for name in ("start_epoch", "warmup_steps", "pixel_weight", "affinity_weight"):
            if getattr(self, name) < 0:
                raise WeaksegError(f"mean_teacher.{name} must be >= 0, got {getattr(self, name)}")


def ema_momentum(step: int, decay: float) -> float:
    """BoxTeacher's ``m_t = min(decay, 1 - 1/(t+1))``: step 0 copies the student, and early steps
    track it closely (a running mean) until the rate saturates at ``decay``."""
    return min(decay, 1.0 - 1.0 / (max(step, 0) + 1))


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose trainable parameters are new tensors and whose frozen ones are shared.

    Frozen parameters (the backbone) never change, so there is nothing to average and no reason to
    hold (or save) them twice; ``torch.save`` stores a shared tensor once. Nothing in the copy
    requires grad.
    """
    memo: dict[int, Any] = {id(p): p for p in model.parameters() if not p.requires_grad}
    clone = copy.deepcopy(model, memo)
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``theta_T <- m theta_T + (1 - m) theta_S`` over the student's trainable parameters only.

    Buffers are left alone (BoxTeacher does not average BN statistics; the student's decoder uses
    GroupNorm and has none).
    """
    mine = dict(teacher.named_parameters())
    pairs = [(mine[name], p) for name, p in student.named_parameters() if p.requires_grad]
    if pairs:
        ours, theirs = zip(*pairs, strict=True)
        torch._foreach_lerp_(list(ours), [p.detach() for p in theirs], 1.0 - momentum)


class MeanTeacher(nn.Module):
    """The EMA teacher and the loss it adds to each training step; see the module docstring.

    ``start_step`` (the global step of the first step with the online masks, where the loss ramp
    starts) travels in the checkpoint through :meth:`state` / :meth:`load_state`.
    """

    def __init__(
        self,
        student: Segmenter,
        config: MeanTeacherConfig,
        pairwise_size: int = 3,
        pairwise_dilation: int = 2,
    ) -> None:
        super().__init__()
        self.config = config
        self.model = frozen_copy(student)
        self.pairwise_size, self.pairwise_dilation = pairwise_size, pairwise_dilation
        self.start_step: int | None = None

    def update(self, student: Segmenter, step: int) -> float:
        """One EMA update with the student as it is now (call before the step's forward); returns m_t."""
        momentum = ema_momentum(step, self.config.decay)
        ema_update(self.model, student, momentum)
        return momentum

    def active(self, epoch: int) -> bool:
        return epoch >= self.config.start_epoch

    def ramp(self, step: int) -> float:
        """Linear warm-up from the first online step (0 before it)."""
        if self.start_step is None:
            return 0.0
        return warmup_factor(step - self.start_step, self.config.warmup_steps)

    def loss(
        self,
        features: list[Tensor],
        student_outputs: dict[str, Tensor],
        batch: dict[str, Any],
        epoch: int,
        step: int,
        ignore_index: int,
    ) -> tuple[Tensor | None, dict[str, float]]:
        """The pseudo-mask terms for this step, or ``(None, {})`` before ``start_epoch``."""
        if not self.active(epoch):
            return None, {}
        if self.start_step is None:
            self.start_step = step
        with torch.no_grad():
            teacher_outputs = self.model.decode(features, batch["image"])
        cfg = self.config
        ramp = self.ramp(step)
        total, logs = mean_teacher_loss(
            student_outputs,
            teacher_outputs,
            batch,
            ramp=ramp,
            mask_threshold=cfg.mask_threshold,
            pixel_weight=cfg.pixel_weight,
            affinity_weight=cfg.affinity_weight,
            affinity_threshold=cfg.affinity_threshold,
            size=self.pairwise_size,
            dilation=self.pairwise_dilation,
            ignore_index=ignore_index,
        )
        if logs:
            logs["mt_ramp"] = ramp
        return total, logs

    def state(self) -> dict[str, Any]:
        return {"start_step": self.start_step}

    def load_state(self, state: dict[str, Any] | None) -> None:
        self.start_step = None if not state else state.get("start_step")
