"""``weakseg demo`` runs end to end on a fresh folder, with no data and no network."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from weakseg.annotations.readers import load_annotations
from weakseg.demo import demo


def test_demo_api(tmp_path: Path) -> None:
    results = demo(tmp_path / "demo", n_images=12, seed=1, epochs=2)
    assert results["roundtrip_coco"] is True
    assert results["roundtrip_yolo"] is True
    doctor = results["doctor"]
    assert doctor["images"] == 12
    assert set(doctor["per_class"]) == {"crack", "blob", "scratch", "stain"}
    assert doctor["tagged_images"] == 12
    assert (tmp_path / "demo" / "splits.json").is_file()
    for name in ("box", "grabcut", "contrast", "fusion"):
        assert 0.0 < results[f"teacher_{name}"]["binary_iou"] <= 1.0
    assert results["teacher_box"]["binary_recall"] == 1.0
    assert (tmp_path / "demo" / "pseudo" / "contrast" / "eval" / "worst.png").is_file()
    assert results["student_teacher"] is not None  # the teacher's row beside the student's
    # Student and teacher rows are scored on the demo's test images, and the student's IoU is the one
    # its written confusion matrix gives (every defect class merged: cm[true, pred], background 0).
    splits = json.loads((tmp_path / "demo" / "splits.json").read_text())
    test_files = {f for f, split in splits.get("splits", splits).items() if split == "test"}
    n_test = len(test_files)
    # The like-for-like row: the student refines the same test boxes the teacher labelled.
    refined = load_annotations(tmp_path / "demo" / "refined" / "pseudo.json", "coco")
    assert {r.file_name for r in refined.images} == test_files
    comparison = json.loads((tmp_path / "demo" / "runs" / "student" / "eval" / "comparison.json").read_text())
    assert comparison["split"] == "test" and n_test > 0
    for row in ("student", "teacher"):
        assert comparison[row]["counts"]["images_scored"] == n_test, row
    cm = np.array(comparison["student"]["confusion_matrix"])
    tp, fp, fn = cm[1:, 1:].sum(), cm[0, 1:].sum(), cm[1:, 0].sum()
    assert fn + tp > 0  # the test images hold defects
    assert results["student"]["binary_iou"] == pytest.approx(tp / (tp + fp + fn))
    assert (tmp_path / "demo" / "predictions" / "predictions.json").is_file()
    assert (tmp_path / "demo" / "runs" / "student" / "weights" / "best.ckpt").is_file()
    report = results["report"]
    assert isinstance(report, Path) and report.is_absolute() and report.is_file()
    assert report == (tmp_path / "demo" / "runs" / "student" / "eval" / "report.html").resolve()
    page = report.read_text(encoding="utf-8")
    assert 'id="metrics"' in page and "teacher: contrast" in page and "student" in page
    refined, teacher = results["student_refined"]["binary_iou"], results["student_teacher"]["binary_iou"]
    word = "above" if refined > teacher else "NOT above"
    assert results["verdict"].startswith(f"student {word} its teacher: {refined:.3f} vs {teacher:.3f}")
    assert f"of {n_test} test images" in results["verdict"]


def test_demo_cli(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "weakseg", "demo", "--out", str(tmp_path / "d"), "--images=8", "--epochs=1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "round trips" in result.stdout
    report = (tmp_path / "d" / "runs" / "student" / "eval" / "report.html").resolve()
    lines = result.stdout.splitlines()
    assert f"report: {report}" in lines
    assert lines[-1].startswith("student ") and "its teacher" in lines[-1], "the verdict is printed last"
    assert report.is_file()
