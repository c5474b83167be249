"""Score any predicted :class:`AnnotationSet` against ground truth: one dataset-level confusion matrix.

The prediction may be a pseudo-label store read back as an annotation set (the teacher audit) or a
student's predictions; both go through the same code, so the student's numbers and its teacher's are
directly comparable. Metrics follow METHODS.md 1.6 (:mod:`weakseg.evaluation.confusion`): one
confusion matrix accumulated over all scored pixels, at the original image resolution unless
``eval_size`` asks for the reference protocol's fixed size (518x518, nearest-neighbour resizing of
both label maps).

Which images are scored (images are matched by ``file_name``):

* GT images with ``annotated=False`` are skipped (``skipped_unannotated``): nothing is known there.
* GT images with any instance lacking a mask (box-only) are skipped (``skipped_no_mask``): their
  pixels cannot be scored. An annotated image with no instance is a known negative and is scored.
* GT instances flagged ``crowd`` are COCO "ignore" regions: their pixels are left out of the counts.
* A scored GT image absent from the prediction counts as an all-background prediction
  (``missing_predictions``); prediction images absent from the GT are ignored
  (``extra_predictions``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from weakseg.annotations import masks as mask_ops
from weakseg.annotations.schema import AnnotationSet, ImageRecord
from weakseg.errors import DataError, WeaksegError
from weakseg.evaluation.confusion import (
    BACKGROUND,
    ConfusionMatrix,
    binary_counts,
    segmentation_metrics,
)


@dataclass(frozen=True)
class ImageScore:
    """Binary (defect vs background) counts of one scored image."""

    file_name: str
    gt_pixels: int  # ground-truth defect pixels
    pred_pixels: int  # predicted defect pixels
    tp: int
    fp: int
    fn: int
    binary_iou: float | None  # None when the image has no defect pixel in either map
    missing_prediction: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class EvaluationResult:
    """Everything :func:`evaluate_annotations` measured."""

    metrics: dict[str, Any]
    confusion: np.ndarray  # int64 (K+1, K+1), cm[true, pred]
    class_names: tuple[str, ...]  # background first
    per_image: list[ImageScore]
    worst: list[ImageScore]
    counts: dict[str, int] = field(default_factory=dict)
    eval_size: tuple[int, int] | None = None  # (height, width); None = original resolution

    @property
    def images_scored(self) -> int:
        return self.counts.get("images_scored", 0)

    @property
    def skipped_no_mask(self) -> int:
        return self.counts.get("skipped_no_mask", 0)

    @property
    def missing_predictions(self) -> int:
        return self.counts.get("missing_predictions", 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: metrics, counts, class names, confusion matrix and the worst images."""
        return {
            "protocol": {
                "aggregation": "one confusion matrix over all scored pixels (dataset-level, micro)",
                "resolution": "original" if self.eval_size is None else list(self.eval_size),
                "undefined_ratios": "null, left out of every mean",
            },
            "class_names": list(self.class_names),
            "metrics": self.metrics,
            "counts": dict(self.counts),
            "confusion_matrix": self.confusion.tolist(),
            "worst": [s.as_dict() for s in self.worst],
        }


# ----------------------------------------------------------------------------------------------------
# scoring


def _check_class_maps(pred: AnnotationSet, gt: AnnotationSet) -> None:
    if tuple(pred.class_map.names) != tuple(gt.class_map.names):
        raise WeaksegError(
            "the prediction's class map does not match the ground truth's "
            f"(prediction: {pred.class_map.describe()}; ground truth: {gt.class_map.describe()}); "
            "class names and ids must be identical"
        )


def _label_dtype(num_defect_classes: int) -> type[np.integer]:
    return np.uint8 if num_defect_classes < 256 else np.int32


def _check_record(record: ImageRecord, num_defect_classes: int, what: str) -> None:
    for inst in record.instances:
        if not 1 <= inst.class_id <= num_defect_classes:
            raise DataError(
                record.file_name,
                f"{what} instance has class id {inst.class_id}, outside 1..{num_defect_classes}",
            )
        if inst.mask is not None and mask_ops.rle_size(inst.mask) != record.size:
            raise DataError(
                record.file_name,
                f"{what} mask is {mask_ops.rle_size(inst.mask)} (h, w) but the image is {record.size}",
            )


def gt_label_map(record: ImageRecord, num_defect_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Ground-truth label map and the valid-pixel map (``None`` when every pixel counts)."""
    _check_record(record, num_defect_classes, "ground-truth")
    dtype = _label_dtype(num_defect_classes)
    crowd = [inst for inst in record.instances if inst.crowd and inst.mask is not None]
    if not crowd:
        return mask_ops.label_map(record, dtype), None
    plain = dataclasses.replace(record, instances=[i for i in record.instances if not i.crowd])
    valid = np.ones(record.size, dtype=bool)
    for inst in crowd:
        valid &= ~mask_ops.decode(inst.mask)  # type: ignore[arg-type]
    return mask_ops.label_map(plain, dtype), valid


def pred_label_map(pred: ImageRecord | None, gt: ImageRecord, num_defect_classes: int) -> np.ndarray:
    if pred is None:
        return np.zeros(gt.size, dtype=_label_dtype(num_defect_classes))
    if pred.size != gt.size:
        raise DataError(
            gt.file_name,
            f"prediction is {pred.width}x{pred.height} but the ground truth is {gt.width}x{gt.height}",
        )
    _check_record(pred, num_defect_classes, "predicted")
    if any(inst.crowd for inst in pred.instances):  # a tag teacher's undecided pixels predict no defect
        pred = dataclasses.replace(pred, instances=[i for i in pred.instances if not i.crowd])
    return mask_ops.label_map(pred, _label_dtype(num_defect_classes))


def _scoreable(record: ImageRecord) -> bool:
    return all(inst.mask is not None for inst in record.instances)


def _normalise_size(eval_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if eval_size is None:
        return None
    if isinstance(eval_size, int):
        h = w = eval_size
    else:
        h, w = (int(v) for v in eval_size)
    if h < 1 or w < 1:
        raise ValueError(f"eval_size must be positive, got {eval_size}")
    return (h, w)


def _resize_nearest(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if arr.shape[:2] == size:
        return arr
    src = arr.astype(np.uint8) if arr.dtype == bool else arr
    if src.dtype not in (np.uint8, np.uint16, np.int16, np.float32):
        src = src.astype(np.int32).astype(np.float32)
    out = cv2.resize(src, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return out.astype(arr.dtype)


def evaluate_annotations(
    pred: AnnotationSet,
    gt: AnnotationSet,
    *,
    worst: int = 12,
    eval_size: int | tuple[int, int] | None = None,
) -> EvaluationResult:
    """Score ``pred`` against ``gt`` (images matched by ``file_name``).

    ``worst`` images with the lowest per-image binary IoU (among images with a ground-truth or a
    predicted defect pixel) are listed in ``result.worst``. ``eval_size`` (``int`` or ``(h, w)``)
    resizes both label maps with nearest-neighbour before counting, as the reference protocol does
    at 518; the default scores at the original resolution. See the module docstring for which images
    are scored or skipped.
    """
    _check_class_maps(pred, gt)
    size = _normalise_size(eval_size)
    k = len(gt.class_map)
    names = (BACKGROUND, *gt.class_map.names)
    acc = ConfusionMatrix(k + 1)
    pred_by_name = pred.by_file_name()
    gt_names = {r.file_name for r in gt.images}
    counts = {
        "images_total": len(gt.images),
        "images_scored": 0,
        "skipped_unannotated": 0,
        "skipped_no_mask": 0,
        "missing_predictions": 0,
        "extra_predictions": sum(1 for name in pred_by_name if name not in gt_names),
    }
    rows: list[ImageScore] = []
    for record in gt.images:
        if not record.annotated:
            counts["skipped_unannotated"] += 1
            continue
        if not _scoreable(record):
            counts["skipped_no_mask"] += 1
            continue
        gt_labels, valid = gt_label_map(record, k)
        pred_record = pred_by_name.get(record.file_name)
        missing = pred_record is None
        counts["missing_predictions"] += int(missing)
        pred_labels = pred_label_map(pred_record, record, k)
        if size is not None:
            gt_labels = _resize_nearest(gt_labels, size)
            pred_labels = _resize_nearest(pred_labels, size)
            valid = None if valid is None else _resize_nearest(valid, size)
        cm = acc.update(gt_labels, pred_labels, valid)
        tp, fp, fn = binary_counts(cm)
        denominator = tp + fp + fn
        rows.append(
            ImageScore(
                file_name=record.file_name,
                gt_pixels=tp + fn,
                pred_pixels=tp + fp,
                tp=tp,
                fp=fp,
                fn=fn,
                binary_iou=None if denominator == 0 else tp / denominator,
                missing_prediction=missing,
            )
        )
        counts["images_scored"] += 1
    ranked = sorted(
        (r for r in rows if r.binary_iou is not None),
        key=lambda r: (r.binary_iou, -(r.fp + r.fn), r.file_name),
    )
    return EvaluationResult(
        metrics=segmentation_metrics(acc.matrix, names),
        confusion=acc.matrix,
        class_names=names,
        per_image=rows,
        worst=ranked[: max(0, int(worst))],
        counts=counts,
        eval_size=size,
    )
