"""Lightning glue: the pure-torch student, its loss and dataset-level validation metrics.

Training steps run the decoder on cached backbone features (see :mod:`feature_cache`); a step whose
loss is not finite is skipped and counted, as in the reference code.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

from weakseg.evaluation.confusion import ConfusionMatrix, segmentation_metrics
from weakseg.student.losses import LossConfig, StudentLoss
from weakseg.student.model import Segmenter


class StudentModule(L.LightningModule):
    def __init__(
        self,
        model: Segmenter,  # the student or the U-Net baseline (student.model.create_segmenter)
        class_names: tuple[str, ...],
        loss: LossConfig | None = None,
        lr: float = 5e-4,
        weight_decay: float = 1e-2,
        max_epochs: int = 30,
    ) -> None:
        super().__init__()
        self.model = model
        self.class_names = class_names
        self.criterion = StudentLoss(loss or LossConfig())
        self.lr, self.weight_decay, self.max_epochs = lr, weight_decay, max_epochs
        self.skipped_steps = 0
        self._epoch_start = time.perf_counter()
        self._val_cm: ConfusionMatrix | None = None

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        # Wall time of the training loop alone (no validation): what the feature cache speeds up.
        self.log("epoch_seconds", time.perf_counter() - self._epoch_start, sync_dist=True, reduce_fx="max")

    def _decode(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        features = batch.get("features")
        if features is None:  # no feature cache: run the frozen backbone now
            with torch.no_grad():
                features = self.model.features(batch["image"])
        return self.model.decode(features, batch["image"])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        outputs = self._decode(batch)
        loss_batch = {
            "target": batch["target"],
            "pixel_weights": batch["weights"],
            "image": batch["image"],
            "box_masks": batch.get("box_masks"),
        }
        total, logs = self.criterion(outputs, loss_batch, self.current_epoch, self.global_step)
        if not torch.isfinite(total):
            self.skipped_steps += 1
            self.log("skipped_steps", float(self.skipped_steps), on_epoch=True)
            return None  # Lightning skips the optimiser step
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
        return total

    def on_validation_epoch_start(self) -> None:
        self._val_cm = ConfusionMatrix(len(self.class_names) + 1)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        outputs = self._decode(batch)
        pred = outputs["fine"].argmax(1)
        target = batch["target"]
        assert self._val_cm is not None
        for t, p in zip(target.cpu().numpy(), pred.cpu().numpy(), strict=True):
            valid = t != 255
            self._val_cm.update(t.clip(0, len(self.class_names)), p, valid)

    def on_validation_epoch_end(self) -> None:
        assert self._val_cm is not None
        matrix = self._val_cm.matrix
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Each rank saw its own shard of the val set: the dataset-level metrics need the sum.
            total = torch.from_numpy(matrix.astype("int64")).to(self.device)
            torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
            matrix = total.cpu().numpy()
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

    def configure_optimizers(self) -> Any:
        params = self.model.trainable_parameters()
        optimiser = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, self.max_epochs))
        return {"optimizer": optimiser, "lr_scheduler": schedule}
