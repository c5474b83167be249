"""Lightning glue: the pure-torch student, its loss and dataset-level validation metrics.

Training steps run the decoder on cached backbone features (see :mod:`feature_cache`); a step whose
loss is not finite is skipped and counted, as in the reference code (under DDP by every rank at once).
With ``mean_teacher.enabled`` an EMA copy of the student (:mod:`mean_teacher`) decodes the same features
and adds BoxTeacher's online pseudo-mask terms.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import numpy as np
import torch

from weakseg.data.preprocess import IGNORE_INDEX
from weakseg.evaluation.confusion import segmentation_metrics
from weakseg.student.decision import ThresholdHistogram, best_decision, decision_histograms, update_histograms
from weakseg.student.losses import LossConfig, StudentLoss
from weakseg.student.segmenter import Segmenter
from weakseg.training.config import TrainConfig
from weakseg.training.mean_teacher import MeanTeacher, MeanTeacherConfig


class StudentModule(L.LightningModule):
    def __init__(
        self,
        model: Segmenter,  # the student or the U-Net baseline (student.segmenter.create_segmenter)
        class_names: tuple[str, ...],
        loss: LossConfig | None = None,
        lr: float = TrainConfig.lr,
        weight_decay: float = TrainConfig.weight_decay,
        max_epochs: int = TrainConfig.epochs,
        monitor: str = TrainConfig.monitor,
        backbone_lr_scale: float = 0.1,
        mean_teacher: MeanTeacherConfig | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.class_names = class_names
        self.criterion = StudentLoss(loss or LossConfig())
        self.lr, self.weight_decay, self.max_epochs = lr, weight_decay, max_epochs
        self.skipped_steps = 0
        self._skip_update = False  # set by a skipped step, read by on_before_optimizer_step
        self._epoch_start = time.perf_counter()
        self.monitor = monitor  # the val metric the decision threshold is chosen for
        self.backbone_lr_scale = backbone_lr_scale
        self._val_hists: dict[str, ThresholdHistogram] = {}
        self.mean_teacher: MeanTeacher | None = None
        if mean_teacher is not None and mean_teacher.enabled:
            cfg = self.criterion.config
            self.mean_teacher = MeanTeacher(model, mean_teacher, cfg.pairwise_size, cfg.pairwise_dilation)

    def on_train_start(self) -> None:
        """Fit the cosine schedule to this run's ``max_epochs``, also when resumed with another count.

        Lightning restores the scheduler's state (``T_max`` included) after ``configure_optimizers``,
        so ``--resume epochs=N`` would keep the old schedule's length. This hook runs after that
        restore: it keeps the position (``last_epoch``) and moves each group's rate onto the new curve,
        because the scheduler's recursive update assumes the current rate already lies on it.
        """
        for config in self.trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
                stretch_cosine(config.scheduler, max(1, self.max_epochs))

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        # Wall time of the training loop alone (no validation): what the feature cache speeds up.
        self.log("epoch_seconds", time.perf_counter() - self._epoch_start, sync_dist=True, reduce_fx="max")

    def _features(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        features = batch.get("features")
        if features is None:  # no feature cache: run the backbone now (with gradients if it trains)
            with torch.set_grad_enabled(self.training and self._backbone_trains()):
                features = self.model.features(batch["image"])
        return features

    def _backbone_trains(self) -> bool:
        return any(p.requires_grad for p in self.model.encoder().parameters())

    def _decode(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.model.decode(self._features(batch), batch["image"])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self._skip_update = False
        features = self._features(batch)
        if self.mean_teacher is not None:
            # BoxTeacher's EMA hook runs before every step, from the first one, so the teacher is a
            # settled average of the student by the time its masks are used (start_epoch).
            self.mean_teacher.update(self.model, self.global_step)
        outputs = self.model.decode(features, batch["image"])
        loss_batch = loss_inputs(batch)
        total, logs = self.criterion(outputs, loss_batch, self.current_epoch, self.global_step)
        mt_logs: dict[str, float] = {}
        if self.mean_teacher is not None:
            extra, mt_logs = self.mean_teacher.loss(
                features,
                outputs,
                loss_batch,
                self.current_epoch,
                self.global_step,
                self.criterion.config.ignore_index,
            )
            if extra is not None:
                total = total + extra
        if not finite_on_every_rank(total):
            # Not None: under DDP a rank that skips its backward leaves the others waiting in the
            # gradient all-reduce. Every rank skips together and runs a backward of a zero loss that
            # reaches each trainable parameter; on_before_optimizer_step then drops the update.
            self.skipped_steps += 1
            self.log("skipped_steps", float(self.skipped_steps), on_epoch=True)
            self._skip_update = True
            return torch.stack([p.sum() * 0.0 for p in self.parameters() if p.requires_grad]).sum()
        size = batch["image"].shape[0]
        self.log("train_loss", total, on_step=False, on_epoch=True, prog_bar=True, batch_size=size)
        self.log(
            "relabelled",
            float(logs.get("n_relabelled", 0)),
            on_step=False,
            on_epoch=True,
            reduce_fx="sum",
            batch_size=size,
        )
        for key, value in mt_logs.items():  # only on steps whose batch had uncertain boxes
            self.log(key, value, on_step=False, on_epoch=True, batch_size=size)
        return total

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Drop a skipped step's update: AdamW moves weights even on zero gradients (weight decay,
        momentum). A parameter without a gradient is left alone, its optimiser state included."""
        if self._skip_update:
            optimizer.zero_grad(set_to_none=True)
            self._skip_update = False

    def on_validation_epoch_start(self) -> None:
        self._val_hists = decision_histograms(len(self.class_names))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        update_histograms(self._val_hists, self._decode(batch), batch["target"], IGNORE_INDEX)

    def on_validation_epoch_end(self) -> None:
        """Scores at the decision (head, threshold) that is best on val for ``monitor``: the operating
        point the run will be used at, so epochs are compared as they would be deployed."""
        hists = self._val_hists
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Each rank saw its own shard of the val set: the dataset-level metrics need the sum.
            for hist in hists.values():
                total = torch.from_numpy(hist.counts).to(self.device)
                torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
                hist.counts = total.cpu().numpy()

        def score(m: np.ndarray) -> float:
            value = segmentation_metrics(m, self.class_names)[self.monitor]
            return -1.0 if value is None else float(value)

        decision, matrix = best_decision(hists, score, self.monitor)
        if matrix is None:
            matrix = np.zeros((len(self.class_names) + 1,) * 2, np.int64)
        self.log("val_threshold", float(decision.threshold), sync_dist=True, reduce_fx="max")
        metrics = segmentation_metrics(matrix, self.class_names)
        for key in ("anomaly_miou", "binary_iou", "binary_recall", "binary_precision"):
            value = metrics[key]
            # Every rank now holds the same value: a "max" sync returns it unchanged (a mean might
            # round), and keeps Lightning from warning about unsynced epoch-level logs under DDP.
            self.log(
                f"val_{key}",
                float(value) if value is not None else 0.0,
                prog_bar=key == "anomaly_miou",
                sync_dist=True,
                reduce_fx="max",
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.mean_teacher is not None:
            checkpoint["mean_teacher"] = self.mean_teacher.state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Let ``--resume`` switch the mean teacher on or off: a checkpoint without a teacher gets one
        copied from its student, and a teacher this run does not use is dropped (state is loaded
        strictly, and Lightning's EMA callback reloads ``current_model_state`` strictly too)."""
        prefix = "mean_teacher."
        for key in ("state_dict", "current_model_state"):
            state = checkpoint.get(key)
            if not isinstance(state, dict):
                continue
            has_teacher = any(k.startswith(prefix) for k in state)
            if self.mean_teacher is None and has_teacher:
                for k in [k for k in state if k.startswith(prefix)]:
                    del state[k]
            elif self.mean_teacher is not None and not has_teacher:
                state.update({prefix + k: v.clone() for k, v in state.items() if k.startswith("model.")})
        if self.mean_teacher is not None:
            self.mean_teacher.load_state(checkpoint.get("mean_teacher"))

    def configure_optimizers(self) -> Any:
        params = self.model.trainable_parameters()
        pretrained = {id(p) for p in self.model.encoder().parameters()}
        groups = [{"params": [p for p in params if id(p) not in pretrained]}]
        tuned = [p for p in params if id(p) in pretrained]
        if tuned:  # a fine-tuned ImageNet backbone moves at a tenth of the decoder's rate
            groups.append({"params": tuned, "lr": self.lr * self.backbone_lr_scale})
        optimiser = torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, self.max_epochs))
        return {"optimizer": optimiser, "lr_scheduler": schedule}


def loss_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """What the criterion reads from a collated training batch, under the criterion's names."""
    return {
        "target": batch["target"],
        "pixel_weights": batch["weights"],
        "image": batch["image"],
        "boxes": batch.get("boxes"),
        "correctable": batch.get("correctable"),
        "box_class": batch.get("box_class"),
    }


def finite_on_every_rank(loss: torch.Tensor) -> bool:
    """Whether ``loss`` is finite here and, under DDP, on every other rank: all skip a step or none."""
    bad = (~torch.isfinite(loss.detach())).any().to(torch.float32).reshape(1)
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    return not bool(bad.item())


def stretch_cosine(schedule: torch.optim.lr_scheduler.CosineAnnealingLR, t_max: int) -> None:
    """Give ``schedule`` the length ``t_max`` at its current epoch (closed-form rate on the new curve)."""
    if schedule.T_max == t_max:
        return
    schedule.T_max = t_max
    progress = (1 + math.cos(math.pi * schedule.last_epoch / t_max)) / 2
    rates = [schedule.eta_min + (base - schedule.eta_min) * progress for base in schedule.base_lrs]
    for group, rate in zip(schedule.optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
    schedule._last_lr = rates  # what get_last_lr() (and Lightning's LR monitor) report
