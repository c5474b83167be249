"""Self-correction never touches certain background: defect-free images, outside boxes, human masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from weakseg.annotations import masks as mask_ops
from weakseg.annotations.schema import AnnotationSet, ClassMap, ImageRecord, Instance, pseudo_origin
from weakseg.data.samples import SampleConfig, SegmentationSamples
from weakseg.student.losses import LossConfig, StudentLoss, self_correct


def _confident_defect_logits(shape: tuple[int, int]) -> torch.Tensor:
    logits = torch.zeros(1, 2, *shape)
    logits[:, 1] = 10.0  # the student is sure every pixel is defect
    return logits


def test_allowed_mask_limits_relabelling() -> None:
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    allowed = torch.zeros(1, 4, 4, dtype=torch.bool)
    allowed[0, :2, :2] = True
    corrected, relabel = self_correct(_confident_defect_logits((4, 4)), target, 0.9, allowed=allowed)
    assert relabel.sum() == 4 and torch.equal(relabel, allowed)
    assert (corrected[~allowed] == 0).all()


def _record(name: str, instances: list[Instance]) -> ImageRecord:
    return ImageRecord(name, 16, 16, instances=instances)


def test_the_loss_relabels_only_inside_teacher_boxes(tmp_path: Path) -> None:
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    teacher = Instance(1, (2, 2, 10, 10), mask_ops.encode(mask), pseudo_origin("box"), 0.9)
    human = Instance(1, (2, 2, 10, 10), mask_ops.encode(mask), "gt_mask")
    records = [_record("a.png", [teacher]), _record("b.png", [human]), _record("c.png", [])]
    samples = SegmentationSamples(
        AnnotationSet(tmp_path, ClassMap(("d",)), records), SampleConfig(size=(16, 16))
    )
    items = [samples.targets(i) for i in range(3)]
    batch = {k: torch.stack([it[k] for it in items]) for k in ("target", "weights", "correctable")}
    logits = _confident_defect_logits((16, 16)).repeat(3, 1, 1, 1)
    loss = StudentLoss(LossConfig(tau=0.9, self_correction_warmup_epochs=0))
    _, logs = loss({"fine": logits}, batch, epoch=1, step=0)
    # Only the teacher's box minus its mask: 8 x 8 - 4 x 4 pixels; the human-masked image and the
    # defect-free one keep every background pixel.
    assert logs["n_relabelled"] == 8 * 8 - 4 * 4
    _, unrestricted = loss({"fine": logits}, {k: v for k, v in batch.items() if k != "correctable"}, 1, 0)
    assert unrestricted["n_relabelled"] > 2 * 16 * 16  # what happened before


def test_the_box_class_term_teaches_the_class_inside_ignored_boxes() -> None:
    target = torch.full((1, 4, 4), 255, dtype=torch.long)
    target[0, 0] = 0  # one row of certain background, the rest an ignored box of class 2
    box_class = torch.where(target == 255, 2, 0)
    logits = torch.zeros(1, 3, 4, 4, requires_grad=True)
    batch = {"target": target, "box_class": box_class}
    off, logs_off = StudentLoss(LossConfig(tau=None))({"fine": logits}, batch, 0, 0)
    on, logs_on = StudentLoss(LossConfig(tau=None, box_class_weight=1.0))({"fine": logits}, batch, 0, 0)
    assert "loss_box_class" not in logs_off
    assert logs_on["loss_box_class"] == pytest.approx(float(np.log(2)))  # two defect classes, uniform
    (grad,) = torch.autograd.grad(on, logits)
    assert (grad[0, 2, 1:] < 0).all() and (grad[0, 1, 1:] > 0).all()  # towards class 2, away from 1
    assert float(on - off) == pytest.approx(float(np.log(2)))
