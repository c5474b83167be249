"""Scoring against ground truth, the evaluation files and the console table of the result."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from weakseg.annotations import masks as mask_ops
from weakseg.annotations.schema import (
    ORIGIN_BOX,
    ORIGIN_GT_MASK,
    AnnotationSet,
    ClassMap,
    ImageRecord,
    Instance,
    pseudo_origin,
)
from weakseg.cli.tables import format_metrics_table
from weakseg.errors import DataError, WeaksegError
from weakseg.evaluation import evaluate_annotations, write_evaluation
from weakseg.evaluation.drawing import FN_COLOUR, gallery_height

H, W = 6, 8
CLASSES = ClassMap(("dirt", "damage"))
DIRT, DAMAGE = 1, 2


def _mask(rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[rows, cols] = True
    return m


def _inst(class_id: int, mask: np.ndarray, origin: str = ORIGIN_GT_MASK, **kw: object) -> Instance:
    box = mask_ops.box_of(mask)
    assert box is not None
    return Instance(class_id, box, mask_ops.encode(mask), origin=origin, **kw)  # type: ignore[arg-type]


def _rec(name: str, *instances: Instance, annotated: bool = True) -> ImageRecord:
    return ImageRecord(name, W, H, list(instances), annotated=annotated)


def _write_images(root: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, size=(H, W, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 255, size=(H, W), dtype=np.uint8)).save(root / "b.png")  # grayscale
    Image.fromarray(np.full((H, W, 3), 100, dtype=np.uint8)).save(root / "c.png")
    Image.fromarray(np.full((H, W, 3), 50, dtype=np.uint8)).save(root / "d.png")
    # f.png deliberately absent: the gallery must still draw its row (placeholder image)


def _sets(root: Path) -> tuple[AnnotationSet, AnnotationSet]:
    """Hand-made GT and prediction; expected counts are worked out in the test below."""
    gt = AnnotationSet(
        root,
        CLASSES,
        [
            _rec("a.png", _inst(DIRT, _mask(slice(1, 3), slice(1, 5)))),  # 2x4 = 8 dirt px
            _rec("b.png", _inst(DAMAGE, _mask(slice(3, 5), slice(0, 2)))),  # 2x2 = 4 damage px
            _rec("c.png", _inst(DIRT, _mask(slice(0, 1), slice(0, 3)))),  # 3 dirt px, no prediction
            _rec(  # box-only GT instance: skipped
                "d.png",
                _inst(DIRT, _mask(slice(0, 2), slice(0, 2))),
                Instance(DAMAGE, (4.0, 4.0, 6.0, 6.0), origin=ORIGIN_BOX),
            ),
            _rec("e.png", annotated=False),  # unlabelled: skipped
            _rec("f.png"),  # known negative: scored
        ],
    )
    teacher = pseudo_origin("box")
    pred = AnnotationSet(
        root,
        ClassMap(("dirt", "damage")),
        [
            _rec("a.png", _inst(DIRT, _mask(slice(1, 3), slice(2, 6)), teacher, score=0.9)),  # shifted right
            _rec("b.png", _inst(DIRT, _mask(slice(3, 5), slice(0, 2)), teacher)),  # damage called dirt
            _rec("d.png", _inst(DIRT, _mask(slice(0, 2), slice(0, 2)), teacher)),
            _rec("e.png", _inst(DIRT, _mask(slice(0, 2), slice(0, 2)), teacher)),
            _rec("f.png", _inst(DAMAGE, _mask(slice(5, 6), slice(6, 8)), teacher)),  # 2 FP px
            _rec("extra.png", _inst(DIRT, _mask(slice(0, 2), slice(0, 2)), teacher)),
        ],
    )
    return gt, pred


def test_evaluate_annotations_by_hand(tmp_path: Path) -> None:
    gt, pred = _sets(tmp_path)
    result = evaluate_annotations(pred, gt, worst=3)
    # Scored: a, b, c, f (4 x 48 = 192 px). cm[true, pred]:
    #   a: dirt GT cols 1-4, pred cols 2-5 on rows 1-2 -> (1,1) 6, (1,0) 2, (0,1) 2
    #   b: damage predicted as dirt -> (2,1) 4
    #   c: missing prediction -> (1,0) 3
    #   f: negative image, damage predicted -> (0,2) 2
    #   (0,0) = 192 - 8 - 4 - 3 - 2 - 2 = 173
    expected = np.array([[173, 2, 2], [5, 6, 0], [0, 4, 0]])
    assert np.array_equal(result.confusion, expected)
    assert result.class_names == ("background", "dirt", "damage")
    assert result.counts == {
        "images_total": 6,
        "images_scored": 4,
        "skipped_unannotated": 1,
        "skipped_no_mask": 1,
        "missing_predictions": 1,
        "extra_predictions": 1,
    }
    assert (result.images_scored, result.skipped_no_mask, result.missing_predictions) == (4, 1, 1)
    m = result.metrics
    # dirt: TP 6, FP 12 - 6 = 6, FN 11 - 6 = 5
    assert m["per_class"]["dirt"]["iou"] == pytest.approx(6 / 17)
    assert m["per_class"]["dirt"]["recall"] == pytest.approx(6 / 11)
    assert m["per_class"]["dirt"]["precision"] == pytest.approx(6 / 12)
    # damage: TP 0, FP 2, FN 4
    assert m["per_class"]["damage"]["iou"] == 0.0
    # background: TP 173, FP 5, FN 4
    assert m["per_class"]["background"]["iou"] == pytest.approx(173 / 182)
    assert m["anomaly_miou"] == pytest.approx(3 / 17)
    # binary: TP 6 + 4 = 10 (b's wrong class counts), FP 2 + 2 = 4, FN 2 + 3 = 5
    assert m["binary_iou"] == pytest.approx(10 / 19)
    assert m["binary_recall"] == pytest.approx(10 / 15)
    assert m["binary_precision"] == pytest.approx(10 / 14)

    rows = {r.file_name: r for r in result.per_image}
    assert list(rows) == ["a.png", "b.png", "c.png", "f.png"]
    a, b, c, f = rows["a.png"], rows["b.png"], rows["c.png"], rows["f.png"]
    assert (a.gt_pixels, a.pred_pixels, a.tp, a.fp, a.fn) == (8, 8, 6, 2, 2)
    assert a.binary_iou == pytest.approx(0.6)
    assert b.binary_iou == 1.0
    assert (c.tp, c.fn, c.binary_iou, c.missing_prediction) == (0, 3, 0.0, True)
    assert (f.gt_pixels, f.fp, f.binary_iou) == (0, 2, 0.0)
    # lowest binary IoU first; ties broken by more wrong pixels (c: 3, f: 2)
    assert [r.file_name for r in result.worst] == ["c.png", "f.png", "a.png"]


def test_worst_excludes_images_without_any_defect_pixel(tmp_path: Path) -> None:
    gt = AnnotationSet(
        tmp_path, CLASSES, [_rec("n.png"), _rec("a.png", _inst(DIRT, _mask(slice(0, 1), slice(0, 1))))]
    )
    pred = AnnotationSet(tmp_path, CLASSES, [_rec("n.png"), _rec("a.png")])
    result = evaluate_annotations(pred, gt)
    assert [r.file_name for r in result.worst] == ["a.png"]
    assert result.per_image[0].binary_iou is None


def test_class_map_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    gt, pred = _sets(tmp_path)
    swapped = AnnotationSet(tmp_path, ClassMap(("damage", "dirt")), pred.images)
    with pytest.raises(WeaksegError) as info:
        evaluate_annotations(swapped, gt)
    text = str(info.value)
    assert "1=damage, 2=dirt" in text and "1=dirt, 2=damage" in text


def test_prediction_size_mismatch_names_the_file(tmp_path: Path) -> None:
    gt = AnnotationSet(tmp_path, CLASSES, [_rec("a.png")])
    pred = AnnotationSet(tmp_path, CLASSES, [ImageRecord("a.png", W + 1, H)])
    with pytest.raises(DataError, match=r"a\.png"):
        evaluate_annotations(pred, gt)


def test_crowd_regions_are_ignored(tmp_path: Path) -> None:
    crowd = _inst(DIRT, _mask(slice(0, 2), slice(0, 2)), crowd=True)
    gt = AnnotationSet(tmp_path, CLASSES, [_rec("a.png", crowd)])
    pred = AnnotationSet(tmp_path, CLASSES, [_rec("a.png", _inst(DAMAGE, _mask(slice(0, 2), slice(0, 2))))])
    result = evaluate_annotations(pred, gt)
    assert result.metrics["pixels"] == H * W - 4
    assert result.metrics["binary_fp"] == 0


def test_a_predicted_crowd_region_predicts_no_defect(tmp_path: Path) -> None:
    """A tag teacher's undecided pixels (crowd) are not a prediction of defect."""
    gt = AnnotationSet(tmp_path, CLASSES, [_rec("a.png", _inst(DIRT, _mask(slice(0, 2), slice(0, 2))))])
    undecided = _inst(DIRT, _mask(slice(0, 2), slice(0, 2)), crowd=True)
    pred = AnnotationSet(tmp_path, CLASSES, [_rec("a.png", undecided)])
    result = evaluate_annotations(pred, gt)
    assert result.metrics["binary_fn"] == 4 and result.metrics["binary_tp"] == 0


def test_fixed_evaluation_size(tmp_path: Path) -> None:
    gt, pred = _sets(tmp_path)
    native = evaluate_annotations(pred, gt)
    doubled = evaluate_annotations(pred, gt, eval_size=(2 * H, 2 * W))  # nearest x2: every count x4
    assert np.array_equal(doubled.confusion, 4 * native.confusion)
    assert doubled.metrics["binary_iou"] == pytest.approx(native.metrics["binary_iou"])
    assert doubled.eval_size == (2 * H, 2 * W)


def test_write_evaluation_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    _write_images(root)
    gt, pred = _sets(root)
    result = evaluate_annotations(pred, gt, worst=3)
    out = tmp_path / "report"
    paths = write_evaluation(result, out, gt=gt, pred=pred, title="box teacher vs GT")
    assert {p.name for p in out.iterdir()} == {"metrics.json", "per_image.csv", "per_class.csv", "worst.png"}
    assert set(paths) == {"metrics", "per_image", "per_class", "gallery"}

    text = (out / "metrics.json").read_text()
    assert "NaN" not in text
    data = json.loads(text)
    assert data["title"] == "box teacher vs GT"
    assert data["class_names"] == ["background", "dirt", "damage"]
    assert data["confusion_matrix"] == result.confusion.tolist()
    assert data["counts"]["missing_predictions"] == 1
    assert data["metrics"]["binary_iou"] == pytest.approx(10 / 19)
    assert data["protocol"]["resolution"] == "original"
    assert [w["file_name"] for w in data["worst"]] == ["c.png", "f.png", "a.png"]

    with open(out / "per_image.csv", newline="") as fh:
        per_image = list(csv.DictReader(fh))
    assert [r["file_name"] for r in per_image] == ["a.png", "b.png", "c.png", "f.png"]
    assert float(per_image[0]["binary_iou"]) == pytest.approx(0.6)
    assert per_image[2]["missing_prediction"] == "True"
    with open(out / "per_class.csv", newline="") as fh:
        per_class = list(csv.DictReader(fh))
    assert [r["class_name"] for r in per_class] == ["background", "dirt", "damage"]
    assert float(per_class[1]["iou"]) == pytest.approx(6 / 17)
    assert per_class[2]["precision"] == "0.0"

    with Image.open(out / "worst.png") as img:
        assert img.mode == "RGB"
        assert img.info["rows"] == "3"
        assert img.height == gallery_height(3)
        arr = np.asarray(img)
    # c.png is flat gray 100 and all its GT pixels are missed: the FN blend must appear
    fn_blend = np.round(0.45 * 100 + 0.55 * np.array(FN_COLOUR)).astype(np.uint8)
    assert np.all(arr == fn_blend, axis=-1).any()


def test_write_evaluation_with_no_worst_rows(tmp_path: Path) -> None:
    gt = AnnotationSet(tmp_path, CLASSES, [_rec("n.png")])
    pred = AnnotationSet(tmp_path, CLASSES, [])
    result = evaluate_annotations(pred, gt)
    write_evaluation(result, tmp_path / "out", gt=gt, pred=pred, title="empty")
    with Image.open(tmp_path / "out" / "worst.png") as img:
        assert img.info["rows"] == "0"
        assert img.height == gallery_height(0)
    data = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert data["metrics"]["anomaly_miou"] is None


def test_format_metrics_table(tmp_path: Path) -> None:
    gt, pred = _sets(tmp_path)
    result = evaluate_annotations(pred, gt)
    console = Console(record=True, width=120)
    console.print(format_metrics_table(result, title="audit"))
    out = console.export_text()
    for needle in ("anomaly mIoU", "binary IoU", "dirt", "damage", "background", "missing predictions"):
        assert needle in out
    assert f"{10 / 19:.4f}" in out
