"""Confusion-matrix metrics (METHODS.md 1.6) on hand-checked tiny label maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from weakseg.evaluation.confusion import (
    ConfusionMatrix,
    binary_counts,
    confusion_matrix,
    per_image_binary,
    segmentation_metrics,
)

NAMES = ("dirt", "damage")

# 0 = background, 1 = dirt, 2 = damage
GT = np.array(
    [
        [0, 0, 1, 1],
        [0, 0, 1, 1],
        [0, 2, 2, 0],
    ],
    dtype=np.uint8,
)
PRED = np.array(
    [
        [0, 1, 1, 1],
        [0, 0, 1, 0],
        [0, 2, 1, 0],
    ],
    dtype=np.uint8,
)
# Pixel by pixel (true, pred): (0,0) x5, (0,1) x1 at [0,1], (1,1) x3, (1,0) x1 at [1,3],
# (2,2) x1 at [2,1], (2,1) x1 at [2,2] (damage predicted as dirt).
EXPECTED_CM = np.array(
    [
        [5, 1, 0],
        [1, 3, 0],
        [0, 1, 1],
    ]
)


def test_confusion_matrix_counts_by_hand() -> None:
    cm = confusion_matrix(GT, PRED, 3)
    assert cm.dtype == np.int64
    assert np.array_equal(cm, EXPECTED_CM)


def test_metrics_by_hand() -> None:
    m = segmentation_metrics(EXPECTED_CM, NAMES)
    bg, dirt, damage = m["per_class"]["background"], m["per_class"]["dirt"], m["per_class"]["damage"]
    # background: TP 5, FP = col 6 - 5 = 1, FN = row 6 - 5 = 1
    assert bg["iou"] == pytest.approx(5 / 7)
    assert bg["recall"] == pytest.approx(5 / 6)
    assert bg["precision"] == pytest.approx(5 / 6)
    assert bg["f1"] == pytest.approx(5 / 6)
    # dirt: TP 3, FP = col (1 + 3 + 1) - 3 = 2, FN = row 4 - 3 = 1
    assert dirt["iou"] == pytest.approx(3 / 6)
    assert dirt["recall"] == pytest.approx(3 / 4)
    assert dirt["precision"] == pytest.approx(3 / 5)
    assert dirt["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert (dirt["tp"], dirt["fp"], dirt["fn"], dirt["gt_pixels"], dirt["pred_pixels"]) == (3, 2, 1, 4, 5)
    # damage: TP 1, FP = col 1 - 1 = 0, FN = row 2 - 1 = 1
    assert damage["iou"] == pytest.approx(1 / 2)
    assert damage["recall"] == pytest.approx(1 / 2)
    assert damage["precision"] == pytest.approx(1.0)
    assert damage["f1"] == pytest.approx(2 / 3)
    # means: background included for mIoU, defect classes only for the anomaly numbers
    assert m["miou"] == pytest.approx((5 / 7 + 1 / 2 + 1 / 2) / 3)
    assert m["anomaly_miou"] == pytest.approx(0.5)
    assert m["anomaly_f1"] == pytest.approx(2 / 3)
    # binary: TP = sum cm[1:,1:] = 3 + 0 + 1 + 1 = 5 (the damage->dirt pixel counts), FP = 1, FN = 1
    assert (m["binary_tp"], m["binary_fp"], m["binary_fn"]) == (5, 1, 1)
    assert m["binary_iou"] == pytest.approx(5 / 7)
    assert m["binary_recall"] == pytest.approx(5 / 6)
    assert m["binary_precision"] == pytest.approx(5 / 6)
    assert m["binary_f1"] == pytest.approx(5 / 6)
    assert m["pixel_accuracy"] == pytest.approx(9 / 12)
    assert m["pixels"] == 12


def test_dirt_damage_confusion_is_binary_tp_but_not_class_tp() -> None:
    gt = np.zeros((4, 4), dtype=np.uint8)
    gt[1:3, 1:3] = 1  # 4 dirt pixels ...
    pred = np.where(gt == 1, 2, 0).astype(np.uint8)  # ... all predicted as damage
    m = segmentation_metrics(confusion_matrix(gt, pred, 3), NAMES)
    assert m["binary_iou"] == 1.0
    assert m["binary_recall"] == 1.0
    assert m["binary_precision"] == 1.0
    assert m["per_class"]["dirt"]["tp"] == 0
    assert m["per_class"]["dirt"]["iou"] == 0.0  # 4 FN
    assert m["per_class"]["damage"]["iou"] == 0.0  # 4 FP
    assert m["anomaly_miou"] == 0.0


def test_dataset_level_accumulation_is_not_the_mean_of_per_image_ious() -> None:
    # image A: one tiny defect pixel, missed -> per-image IoU 0
    gt_a = np.zeros((10, 10), dtype=np.uint8)
    gt_a[0, 0] = 1
    pred_a = np.zeros_like(gt_a)
    # image B: 99 defect pixels, all found -> per-image IoU 1
    gt_b = np.zeros((10, 10), dtype=np.uint8)
    gt_b.flat[:99] = 1
    pred_b = gt_b.copy()
    acc = ConfusionMatrix(3)
    acc.update(gt_a, pred_a)
    acc.update(gt_b, pred_b)
    m = segmentation_metrics(acc.matrix, NAMES)
    per_image = [per_image_binary(gt_a, pred_a)["iou"], per_image_binary(gt_b, pred_b)["iou"]]
    assert per_image == [0.0, 1.0]
    assert np.mean(per_image) == 0.5
    # dataset level: TP 99, FN 1 -> 99/100
    assert m["binary_iou"] == pytest.approx(0.99)
    assert m["per_class"]["dirt"]["iou"] == pytest.approx(0.99)


def test_absent_class_is_none_and_excluded_from_means() -> None:
    gt = np.zeros((2, 3), dtype=np.uint8)
    gt[0, :2] = 1
    pred = gt.copy()  # dirt perfect, damage absent from both
    m = segmentation_metrics(confusion_matrix(gt, pred, 3), NAMES)
    damage = m["per_class"]["damage"]
    assert damage["iou"] is None and damage["f1"] is None
    assert damage["recall"] is None and damage["precision"] is None
    assert m["anomaly_miou"] == 1.0  # mean over dirt only, not (1 + 0) / 2
    assert m["anomaly_f1"] == 1.0
    assert m["miou"] == 1.0  # background and dirt are both perfect
    text = json.dumps(m, allow_nan=False)  # plain JSON, no NaN
    assert '"iou": null' in text


def test_class_with_gt_but_no_prediction_is_zero_and_counted() -> None:
    gt = np.array([[0, 1, 2, 2]], dtype=np.uint8)
    pred = np.array([[0, 1, 0, 0]], dtype=np.uint8)  # damage never predicted
    m = segmentation_metrics(confusion_matrix(gt, pred, 3), NAMES)
    damage = m["per_class"]["damage"]
    assert damage["iou"] == 0.0
    assert damage["recall"] == 0.0
    assert damage["f1"] == 0.0
    assert damage["precision"] is None  # nothing predicted as damage
    assert m["anomaly_miou"] == pytest.approx((1.0 + 0.0) / 2)


def test_class_predicted_but_absent_from_gt() -> None:
    gt = np.array([[0, 0, 1]], dtype=np.uint8)
    pred = np.array([[2, 0, 1]], dtype=np.uint8)
    m = segmentation_metrics(confusion_matrix(gt, pred, 3), NAMES)
    damage = m["per_class"]["damage"]
    assert damage["iou"] == 0.0 and damage["precision"] == 0.0 and damage["f1"] == 0.0
    assert damage["recall"] is None


def test_no_defect_anywhere_gives_none_for_defect_metrics() -> None:
    z = np.zeros((3, 3), dtype=np.uint8)
    m = segmentation_metrics(confusion_matrix(z, z, 3), NAMES)
    assert m["anomaly_miou"] is None and m["anomaly_f1"] is None
    assert m["binary_iou"] is None and m["binary_recall"] is None
    assert m["binary_precision"] is None and m["binary_f1"] is None
    assert m["miou"] == 1.0


def test_metric_values_are_plain_python_types() -> None:
    m = segmentation_metrics(EXPECTED_CM, NAMES)

    def walk(v: object) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        else:
            assert v is None or type(v) in (int, float), (v, type(v))

    walk(m)


def test_class_names_with_or_without_background() -> None:
    a = segmentation_metrics(EXPECTED_CM, NAMES)
    b = segmentation_metrics(EXPECTED_CM, ("bg", *NAMES))
    assert list(a["per_class"]) == ["background", "dirt", "damage"]
    assert list(b["per_class"]) == ["bg", "dirt", "damage"]
    assert a["miou"] == b["miou"]
    with pytest.raises(ValueError, match="class names"):
        segmentation_metrics(EXPECTED_CM, ("dirt",))


def test_update_merge_and_valid() -> None:
    rng = np.random.default_rng(0)
    gts = [rng.integers(0, 3, size=(7, 9)).astype(np.uint8) for _ in range(4)]
    preds = [rng.integers(0, 3, size=(7, 9)).astype(np.uint8) for _ in range(4)]
    one = ConfusionMatrix(3)
    for g, p in zip(gts, preds, strict=True):
        one.update(g, p)
    left, right = ConfusionMatrix(3), ConfusionMatrix(3)
    for g, p in zip(gts[:2], preds[:2], strict=True):
        left.update(g, p)
    for g, p in zip(gts[2:], preds[2:], strict=True):
        right.update(g, p)
    assert np.array_equal(left.merge(right).matrix, one.matrix)
    # naive reference
    naive = np.zeros((3, 3), dtype=np.int64)
    for g, p in zip(gts, preds, strict=True):
        for t, q in zip(g.ravel(), p.ravel(), strict=True):
            naive[t, q] += 1
    assert np.array_equal(one.matrix, naive)
    assert one.total == 4 * 63
    # valid excludes pixels, e.g. an ignore label 255 in the ground truth
    gt = np.array([[0, 1, 255]], dtype=np.uint8)
    pred = np.array([[0, 1, 1]], dtype=np.uint8)
    cm = ConfusionMatrix(3)
    cm.update(gt, pred, valid=gt != 255)
    assert cm.matrix.sum() == 2 and cm.matrix[1, 1] == 1 and cm.matrix[0, 0] == 1
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        cm.update(gt, pred)
    with pytest.raises(ValueError, match="shapes differ"):
        cm.update(gt, pred[:, :2])
    with pytest.raises(ValueError, match="cannot merge"):
        cm.merge(ConfusionMatrix(4))


def test_for_defect_classes_and_bool_inputs() -> None:
    cm = ConfusionMatrix.for_defect_classes(1)
    assert cm.num_classes == 2
    cm.update(np.array([True, False]), np.array([True, True]))
    assert np.array_equal(cm.matrix, [[0, 1], [0, 1]])
    assert binary_counts(cm.matrix) == (1, 1, 0)


def test_per_image_binary() -> None:
    r = per_image_binary(GT, PRED)
    # defect = non-zero: GT has 6, PRED has 6; both non-zero at 5 pixels
    assert r == {"tp": 5, "fp": 1, "fn": 1, "iou": pytest.approx(5 / 7)}
    empty = per_image_binary(np.zeros((2, 2)), np.zeros((2, 2)))
    assert empty == {"tp": 0, "fp": 0, "fn": 0, "iou": None}


def test_update_accumulates_large_maps() -> None:
    # Speed is measured in benchmarks/, not asserted here; this checks the counts on a large map.
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 3, size=(500, 500)).astype(np.uint8)
    pred = rng.integers(0, 3, size=(500, 500)).astype(np.uint8)
    cm = ConfusionMatrix(3)
    for _ in range(5):
        cm.update(gt, pred)
    assert cm.total == 5 * 250_000
    assert cm.matrix[1, 2] == 5 * int(((gt == 1) & (pred == 2)).sum())
