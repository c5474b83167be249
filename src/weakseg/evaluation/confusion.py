"""Confusion-matrix segmentation metrics, exactly as METHODS.md section 1.6 (Boxes2Pixels).

One confusion matrix ``cm[true, pred]`` is accumulated over every evaluated pixel of the dataset
(micro, dataset-level aggregation), and every number is derived from it. This is *not* the mean of
per-image scores: an image with 10 defect pixels weighs as much as its 10 pixels, not as much as an
image with 10 000 (see :func:`per_image_binary` for the per-image numbers used to rank images).

Classes: ``0`` is background, ``1..K`` are the defect classes, so the matrix is ``(K+1) x (K+1)``.

Per class ``c`` (background included), with ``TP = cm[c, c]``, ``FP = sum(cm[:, c]) - TP`` and
``FN = sum(cm[c, :]) - TP``:

* ``iou = TP / (TP + FP + FN)``, ``recall = TP / (TP + FN)``, ``precision = TP / (TP + FP)``,
  ``f1 = 2 TP / (2 TP + FP + FN)``.
* ``miou``: mean IoU over all ``K+1`` classes, background included (for reference).
* ``anomaly_miou`` / ``anomaly_f1``: mean IoU / F1 over the defect classes ``1..K`` only.
* Binary (all defect classes merged): ``TP = sum cm[1:, 1:]`` (a dirt<->damage confusion is still a
  binary true positive), ``FP = sum cm[0, 1:]``, ``FN = sum cm[1:, 0]``; ``binary_iou``,
  ``binary_recall``, ``binary_precision``, ``binary_f1`` as above.

**Undefined ratios.** Every ratio whose denominator is zero is reported as ``None`` (``null`` in JSON),
never as 0 or 1, and is left out of every mean. Consequences:

* A class absent from both the ground truth and the prediction has ``iou = f1 = None`` (0/0) and does
  not count towards ``miou``, ``anomaly_miou`` or ``anomaly_f1``. (torchmetrics' ``MeanIoU`` reports
  -1 for such a class; the reference code's epsilon would silently make it 0 and drag the mean down.)
* A class with ground-truth pixels but no predicted pixel has ``iou = f1 = recall = 0`` (it counts in
  the means as a 0) and ``precision = None`` (nothing was predicted, so there is no precision).
* A class predicted but absent from the ground truth has ``iou = f1 = precision = 0`` and
  ``recall = None``.
* A mean over no defined value (e.g. ``anomaly_miou`` on a set where no defect exists and none is
  predicted) is ``None``.

All returned numbers are plain Python ``int``/``float``/``None``, so the dict is JSON-serialisable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Name used for class 0 when :func:`segmentation_metrics` is given only the defect class names.
BACKGROUND = "background"


def confusion_matrix(
    gt: np.ndarray, pred: np.ndarray, num_classes: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """``int64`` ``(num_classes, num_classes)`` matrix ``cm[true, pred]`` of two label maps.

    ``valid`` (a boolean map of the same shape) restricts the count to its ``True`` pixels, e.g. to
    skip "ignore" regions. Labels outside ``0..num_classes-1`` in the counted pixels raise
    ``ValueError``.
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth and prediction shapes differ: {gt.shape} vs {pred.shape}")
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != gt.shape:
            raise ValueError(f"valid mask shape {valid.shape} differs from the label maps' {gt.shape}")
        gt = gt[valid]
        pred = pred[valid]
    gt = gt.ravel()
    pred = pred.ravel()
    n = int(num_classes)
    if gt.size == 0:
        return np.zeros((n, n), dtype=np.int64)
    for name, arr in (("ground truth", gt), ("prediction", pred)):
        if arr.dtype.kind not in "biu":
            raise ValueError(f"{name} labels must be integers or booleans, got dtype {arr.dtype}")
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= n:
            raise ValueError(
                f"{name} holds label {lo if lo < 0 else hi}, outside 0..{n - 1} "
                f"(pass `valid` to exclude ignore regions)"
            )
    # Small label types multiply in their own width; widen first (n*n may exceed 255).
    index = gt.astype(np.intp) * n + pred.astype(np.intp)
    return np.bincount(index, minlength=n * n).reshape(n, n).astype(np.int64, copy=False)


class ConfusionMatrix:
    """Accumulates ``cm[true, pred]`` over many label maps.

    ``num_classes`` counts *all* classes, background included: ``K + 1`` for ``K`` defect classes
    (use :meth:`for_defect_classes` to pass ``K``).
    """

    def __init__(self, num_classes: int) -> None:
        if int(num_classes) < 2:
            raise ValueError(f"num_classes counts background too and must be >= 2, got {num_classes}")
        self.num_classes = int(num_classes)
        self._cm = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    @classmethod
    def for_defect_classes(cls, num_defect_classes: int) -> ConfusionMatrix:
        """A matrix for background plus ``num_defect_classes`` defect classes."""
        return cls(int(num_defect_classes) + 1)

    def update(self, gt: np.ndarray, pred: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Add one pair of label maps; returns that pair's own matrix (handy for per-image scores)."""
        cm = confusion_matrix(gt, pred, self.num_classes, valid)
        self._cm += cm
        return cm

    def merge(self, other: ConfusionMatrix | np.ndarray) -> ConfusionMatrix:
        """Add another accumulator's counts (e.g. from another worker); returns ``self``."""
        counts = other.matrix if isinstance(other, ConfusionMatrix) else np.asarray(other)
        if counts.shape != self._cm.shape:
            raise ValueError(f"cannot merge a {counts.shape} confusion matrix into a {self._cm.shape} one")
        self._cm += counts.astype(np.int64, copy=False)
        return self

    def reset(self) -> None:
        self._cm[:] = 0

    @property
    def matrix(self) -> np.ndarray:
        """A copy of the counts, ``cm[true, pred]``."""
        return self._cm.copy()

    @property
    def total(self) -> int:
        return int(self._cm.sum())

    def metrics(self, class_names: Sequence[str]) -> dict[str, Any]:
        return segmentation_metrics(self._cm, class_names)

    def __repr__(self) -> str:
        return f"ConfusionMatrix(num_classes={self.num_classes}, pixels={self.total})"


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else float(num) / float(den)


def _scores(tp: int, fp: int, fn: int) -> dict[str, float | None]:
    """IoU, recall, precision and F1 from one set of counts (per class and binary alike)."""
    return {
        "iou": _ratio(tp, tp + fp + fn),
        "recall": _ratio(tp, tp + fn),
        "precision": _ratio(tp, tp + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _mean(values: Sequence[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def _class_names(num_classes: int, class_names: Sequence[str]) -> list[str]:
    names = [str(n) for n in class_names]
    if len(names) == num_classes - 1:
        names = [BACKGROUND, *names]
    if len(names) != num_classes:
        raise ValueError(
            f"{len(names)} class names for a {num_classes}x{num_classes} confusion matrix; pass the "
            f"{num_classes - 1} defect class names (background is added) or all {num_classes} names"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {names}")
    return names


def binary_counts(cm: np.ndarray) -> tuple[int, int, int]:
    """``(tp, fp, fn)`` with every defect class merged into one: ``cm[1:,1:]``, ``cm[0,1:]``, ``cm[1:,0]``."""
    cm = np.asarray(cm)
    return int(cm[1:, 1:].sum()), int(cm[0, 1:].sum()), int(cm[1:, 0].sum())


def segmentation_metrics(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """All METHODS.md 1.6 metrics from one dataset-level confusion matrix ``cm[true, pred]``.

    ``class_names`` is either the ``K`` defect class names (background is named ``"background"``) or
    all ``K + 1`` names with background first. Returns::

        {"miou", "anomaly_miou", "anomaly_f1",
         "binary_iou", "binary_recall", "binary_precision", "binary_f1",
         "binary_tp", "binary_fp", "binary_fn", "pixel_accuracy", "pixels",
         "per_class": {name: {"id", "iou", "recall", "precision", "f1",
                              "tp", "fp", "fn", "gt_pixels", "pred_pixels"}}}

    Undefined ratios are ``None`` and are excluded from the means (see the module docstring).
    """
    cm = np.asarray(cm, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < 2:
        raise ValueError(f"expected a square (K+1)x(K+1) confusion matrix with K >= 1, got {cm.shape}")
    n = cm.shape[0]
    names = _class_names(n, class_names)
    tp_all = np.diag(cm)
    gt_all = cm.sum(axis=1)
    pred_all = cm.sum(axis=0)

    per_class: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(names):
        tp, gt_px, pred_px = int(tp_all[c]), int(gt_all[c]), int(pred_all[c])
        fp, fn = pred_px - tp, gt_px - tp
        per_class[name] = {
            "id": c,
            **_scores(tp, fp, fn),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "gt_pixels": gt_px,
            "pred_pixels": pred_px,
        }
    rows = list(per_class.values())
    btp, bfp, bfn = binary_counts(cm)
    total = int(cm.sum())
    return {
        "miou": _mean([r["iou"] for r in rows]),
        "anomaly_miou": _mean([r["iou"] for r in rows[1:]]),
        "anomaly_f1": _mean([r["f1"] for r in rows[1:]]),
        **{f"binary_{key}": value for key, value in _scores(btp, bfp, bfn).items()},
        "binary_tp": btp,
        "binary_fp": bfp,
        "binary_fn": bfn,
        "pixel_accuracy": _ratio(int(tp_all.sum()), total),
        "pixels": total,
        "per_class": per_class,
    }


def per_image_binary(gt: np.ndarray, pred: np.ndarray, valid: np.ndarray | None = None) -> dict[str, Any]:
    """Binary (defect vs background) counts of one image: ``{"tp", "fp", "fn", "iou"}``.

    Any non-zero label is a defect. ``iou`` is ``None`` when the image has no defect pixel in either
    map (nothing to get right or wrong). Used to rank the worst images, not for the headline numbers.
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth and prediction shapes differ: {gt.shape} vs {pred.shape}")
    g = gt != 0
    p = pred != 0
    if valid is not None:
        v = np.asarray(valid, dtype=bool)
        g &= v
        p &= v
    tp = int(np.count_nonzero(g & p))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(g)) - tp
    return {"tp": tp, "fp": fp, "fn": fn, "iou": _ratio(tp, tp + fp + fn)}
