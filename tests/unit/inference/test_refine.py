"""``refine``: the student as a teacher writes an ordinary pseudo-label store (refine -> retrain)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from weakseg.annotations import masks as mask_ops
from weakseg.annotations.readers import load_annotations
from weakseg.inference.refine import compare_with_teacher, refine
from weakseg.pseudolabel.store import PseudoStore, load_pseudo
from weakseg.teachers import teacher_names
from weakseg.teachers.refine import box_slices


def _masks_inside_boxes(store: Path) -> int:
    ann = load_annotations(store / "pseudo.json", "coco")
    n = 0
    for record, inst in ann.instances():
        mask = mask_ops.decode(inst.mask)
        assert mask.shape == record.size
        outside = np.ones(record.size, dtype=bool)
        outside[box_slices(inst.box, record.size)] = False
        assert not (mask & outside).any()
        assert 0.0 <= inst.score <= 1.0
        n += 1
    return n


def test_refine_writes_a_store_that_trains(trained, tmp_path: Path) -> None:
    assert "student" in teacher_names()
    result = refine(trained.run, trained.data, tmp_path / "refined")
    assert result.merged is not None and result.failed == 0
    meta = PseudoStore(tmp_path / "refined").meta()
    assert meta["teacher"] == "student" and meta["config"]["probability"] == "foreground"
    gt = load_annotations(trained.data)
    assert _masks_inside_boxes(tmp_path / "refined") == sum(len(r.instances) for r in gt.images)
    assert load_pseudo(tmp_path / "refined").class_map == gt.class_map  # what train() reads
    again = refine(trained.run, trained.data, tmp_path / "refined")  # resumable: nothing left to do
    assert again.processed == 0 and again.skipped == 12
    scores = compare_with_teacher(tmp_path / "refined", trained.data, trained.store)
    assert scores is not None and scores["teacher"] is not None
    assert scores["refined"]["counts"]["images_scored"] == scores["teacher"]["counts"]["images_scored"]
    assert set(scores["gain"]) >= {"binary_iou", "anomaly_miou"}


def test_refine_fused_with_the_teacher(trained, tmp_path: Path) -> None:
    result = refine(trained.run, trained.data, tmp_path / "fused", pseudo=trained.store, student_weight=0.0)
    assert result.merged is not None and result.failed == 0
    assert json.loads((tmp_path / "fused" / "store.json").read_text())["config"]["pseudo"]
    _masks_inside_boxes(tmp_path / "fused")
    # With the student's weight at 0 the fused mask is the teacher's, exactly: the teacher's masks are
    # already refined (clipped, de-specked, filled), and refining them again changes nothing. Boxes
    # whose teacher quality is 0 carry no weight and are left to the student alone.
    teacher = load_annotations(trained.store / "pseudo.json", "coco").by_file_name()
    fused = load_annotations(tmp_path / "fused" / "pseudo.json", "coco").by_file_name()
    compared = total = 0
    for name, record in fused.items():
        for a, b in zip(record.instances, teacher[name].instances, strict=True):
            total += 1
            if b.score is not None and b.score <= 0:
                continue
            assert np.array_equal(mask_ops.decode(a.mask), mask_ops.decode(b.mask)), (name, b.box)
            compared += 1
    assert compared > total // 2  # most teacher masks have a positive quality
