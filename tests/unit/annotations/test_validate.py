"""The validator on in-memory sets: each problem found once, named, and all found together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from weakseg.annotations import masks as mask_ops
from weakseg.annotations.doctor import summarise
from weakseg.annotations.schema import AnnotationSet, ClassMap, ImageRecord, Instance
from weakseg.annotations.validate import validate
from weakseg.errors import IssueLog


def _dataset(tmp_path: Path) -> AnnotationSet:
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((20, 30), dtype=np.uint8)).save(tmp_path / name)
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[2:6, 3:9] = 1
    records = [
        ImageRecord(
            "a.png", 30, 20, [Instance(1, (3, 2, 9, 6), mask_ops.encode(mask), "gt_mask")], tags=(1,)
        ),
        ImageRecord("b.png", 30, 20, []),
    ]
    return AnnotationSet(tmp_path, ClassMap(("crack", "blob")), records)


def _problems(ann: AnnotationSet) -> list[str]:
    log = IssueLog()
    validate(ann, log)
    return [str(i) for i in log.errors]


def test_valid_set_has_no_errors(tmp_path: Path) -> None:
    assert _problems(_dataset(tmp_path)) == []


def test_every_problem_reported_together(tmp_path: Path) -> None:
    ann = _dataset(tmp_path)
    a, b = ann.images
    a.instances.append(Instance(7, (0, 0, 5, 5)))
    a.instances.append(Instance(1, (25, 15, 40, 18)))
    a.instances.append(Instance(2, (4, 4, 4, 9)))
    a.instances.append(Instance(1, (0, 0, 5, 5), mask_ops.encode(np.ones((5, 5), dtype=np.uint8))))
    b.file_name = "../outside.png"
    ann.images.append(ImageRecord("missing.png", 30, 20))
    ann.images.append(ImageRecord("a.png", 31, 20))
    problems = "\n".join(_problems(ann))
    assert "unknown class id 7" in problems
    assert "lies outside the 30x20 image" in problems
    assert "zero area" in problems
    assert "mask is 5x5 but the image is 30x20" in problems
    assert "escapes the dataset root" in problems
    assert "missing.png: image file is missing" in problems
    assert "annotation says 31x20 but the file is 30x20" in problems
    assert "listed 2 times" in problems


def test_small_overhang_is_tolerated(tmp_path: Path) -> None:
    ann = _dataset(tmp_path)
    ann.images[1].instances.append(Instance(2, (20.0, 10.0, 30.4, 20.3)))
    assert _problems(ann) == []


def test_summary_counts(tmp_path: Path) -> None:
    ann = _dataset(tmp_path)
    ann.images.append(ImageRecord("c.png", 10, 12, [], annotated=False))
    s = summarise(ann)
    assert s["images"] == 3
    assert s["instances"] == 1 and s["masks"] == 1
    assert s["per_class"] == {"crack": 1, "blob": 0}
    assert s["negative_images"] == 1
    assert s["unannotated_images"] == 1
    assert s["width_range"] == [10, 30]
