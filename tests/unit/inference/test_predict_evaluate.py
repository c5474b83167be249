"""End to end on synthetic data: pseudo-label -> train (fixture) -> evaluate -> predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from weakseg.annotations import masks as mask_ops
from weakseg.annotations.images import read_image
from weakseg.deploy.onnx import export_onnx
from weakseg.errors import DataError
from weakseg.evaluate import evaluate
from weakseg.inference.evaluate_run import GAIN_METRICS
from weakseg.inference.predict import predict
from weakseg.inference.run import RunInfo


def test_predict_writes_masks_overlays_and_coco(trained, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    result = predict(trained.run, trained.data, out, batch_size=5)
    assert result.images == 12 and not result.failed
    doc = json.loads((out / "predictions.json").read_text())
    k = len(doc["categories"])
    assert [c["name"] for c in doc["categories"]] == (out / "classes.txt").read_text().split()
    assert len(doc["annotations"]) == result.instances
    by_image = {img["id"]: img for img in doc["images"]}
    for img in doc["images"]:
        stem = Path(img["file_name"]).with_suffix("")
        labels = np.asarray(Image.open(out / "masks" / f"{stem}.png"))
        assert labels.shape == (img["height"], img["width"]) == (56, 72)
        assert labels.max() <= k
        overlay = np.asarray(Image.open(out / "overlays" / f"{stem}.jpg"))
        assert overlay.shape == (56, 72, 3)
    painted: dict[int, np.ndarray] = {}
    for ann in doc["annotations"]:
        img = by_image[ann["image_id"]]
        stem = Path(img["file_name"]).with_suffix("")
        labels = np.asarray(Image.open(out / "masks" / f"{stem}.png"))
        mask = mask_ops.decode(ann["segmentation"])
        assert 0.0 <= ann["score"] <= 1.0
        assert 1 <= ann["category_id"] <= k
        assert (labels[mask] == ann["category_id"]).all()
        assert len(mask_ops.components(mask, min_area=0)) == 1  # one instance per component
        acc = painted.setdefault(img["id"], np.zeros(labels.shape, dtype=bool))
        assert not (acc & mask).any()
        acc |= mask
    for image_id, acc in painted.items():  # the instances cover exactly the PNG's foreground
        stem = Path(by_image[image_id]["file_name"]).with_suffix("")
        labels = np.asarray(Image.open(out / "masks" / f"{stem}.png"))
        assert np.array_equal(acc, labels > 0)


def test_predict_single_odd_sized_file_and_min_area(trained, tmp_path: Path) -> None:
    image = read_image(trained.data / "images" / "syn_0000.png")
    odd = np.ascontiguousarray(
        np.pad(image, ((0, 7), (0, 3), (0, 0)) if image.ndim == 3 else ((0, 7), (0, 3)))
    )
    Image.fromarray(odd).save(tmp_path / "odd.png")
    result = predict(trained.run, tmp_path / "odd.png", tmp_path / "out", min_area=5)
    assert result.images == 1
    labels = np.asarray(Image.open(tmp_path / "out" / "masks" / "odd.png"))
    assert labels.shape == (63, 75)
    doc = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert all(a["area"] >= 5 for a in doc["annotations"])
    assert doc["weakseg"]["min_area"] == 5


def test_evaluate_run_scores_student_and_teacher(trained, tmp_path: Path) -> None:
    output = evaluate(trained.run, trained.data, out=tmp_path / "eval")
    doc = output.to_dict()
    assert output.kind == "model" and doc["split"] == "test"
    splits = json.loads((trained.run / "splits.json").read_text())["splits"]
    n_test = sum(1 for s in splits.values() if s == "test")
    assert doc["student"]["counts"]["images_scored"] == n_test
    assert doc["teacher"]["counts"]["images_scored"] == n_test
    assert doc["student"]["counts"]["missing_predictions"] == 0
    assert doc["teacher"]["counts"]["missing_predictions"] == 0
    assert set(doc["gain"]) == set(GAIN_METRICS)
    s, t = doc["student"]["metrics"]["binary_iou"], doc["teacher"]["metrics"]["binary_iou"]
    assert doc["gain"]["binary_iou"] == pytest.approx(s - t)
    for name in (
        "metrics.json",
        "per_image.csv",
        "worst.png",
        "teacher/metrics.json",
        "comparison.json",
        "report.html",
    ):
        assert (tmp_path / "eval" / name).is_file(), name
    assert output.files["report"] == tmp_path / "eval" / "report.html"
    page = output.files["report"].read_text(encoding="utf-8")
    assert 'id="metrics"' in page and "teacher: " in page and "student" in page
    assert json.loads((tmp_path / "eval" / "comparison.json").read_text())["gain"] == doc["gain"]


def test_evaluate_run_all_images_and_missing_teacher(trained, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(RunInfo, "pseudo_path", lambda self: None)
    output = evaluate(trained.run, trained.data, out=tmp_path / "eval", split="all", worst=0)
    doc = output.to_dict()
    assert doc["split"] == "all" and doc["student"]["counts"]["images_scored"] == 12
    assert doc["teacher"] is None and doc["gain"] is None and "teacher skipped" in doc["teacher_note"]
    page = (tmp_path / "eval" / "report.html").read_text(encoding="utf-8")
    assert "teacher skipped" in page and "teacher: " not in page and "No gallery was asked for" in page


def test_evaluate_scores_a_predictions_folder_and_an_onnx_model_like_the_run(trained, tmp_path: Path) -> None:
    """Issue 11: evaluate takes what predict and export write, and they score as the run does."""
    run_all = evaluate(trained.run, trained.data, out=tmp_path / "run_eval", split="all", worst=0)
    predict(trained.run, trained.data, tmp_path / "pred")
    folder = evaluate(tmp_path / "pred", trained.data, worst=0)
    assert folder.kind == "predictions" and folder.warnings == []
    assert folder.result.metrics == run_all.result.metrics
    assert (tmp_path / "pred" / "eval" / "report.html").is_file()

    export_onnx(trained.run, tmp_path / "m.onnx")
    onnx = evaluate(tmp_path / "m.onnx", trained.data, worst=0)
    run_test = evaluate(trained.run, trained.data, out=tmp_path / "run_test", worst=0)
    assert onnx.kind == "model" and onnx.comparison["split"] == "test"  # the source run's split
    assert onnx.teacher is not None and (tmp_path / "m.eval" / "report.html").is_file()
    for key in ("binary_iou", "anomaly_miou"):
        assert abs(onnx.result.metrics[key] - run_test.result.metrics[key]) < 1e-3


def test_evaluate_refuses_predictions_that_match_no_image_and_warns_on_missing_ones(
    trained, tmp_path: Path
) -> None:
    predict(trained.run, trained.data, tmp_path / "pred")
    path = tmp_path / "pred" / "predictions.json"
    doc = json.loads(path.read_text())
    n = len(doc["images"])
    doc["images"] = doc["images"][: n // 2]
    kept = {im["id"] for im in doc["images"]}
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in kept]
    path.write_text(json.dumps(doc))
    partial = evaluate(tmp_path / "pred", trained.data, worst=0)
    assert partial.warnings == [
        f"{n - n // 2} of {n} ground-truth images have no prediction; scored as empty"
    ]
    for image in doc["images"]:
        image["file_name"] = "elsewhere/" + image["file_name"]
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"pred: no image in common with .*\(6 predicted, e\.g\. elsewhere/"):
        evaluate(tmp_path / "pred", trained.data)
    with pytest.raises(DataError, match="is not something weakseg can score"):
        evaluate(tmp_path, trained.data)
