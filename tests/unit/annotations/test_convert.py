"""Conversions through the public API: masks -> COCO -> masks is pixel-lossless."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from weakseg.annotations.convert import convert
from weakseg.annotations.images import read_label_png
from weakseg.annotations.readers import load_annotations
from weakseg.annotations.schema import AnnotationSet
from weakseg.errors import DataError


def _indexed_dataset(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("crack\nblob\nstain\n")
    labels = {}
    for i in range(4):
        label = np.zeros((48, 64), dtype=np.uint8)
        if i:  # image 0 is defect-free
            label[5 + i : 20, 10:30] = 1
            label[30:44, 40 + i : 60] = 2 + (i % 2)
            label[25, 0:64] = 1  # a one-pixel-thin crack across the image
        name = f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (48, 64), dtype=np.uint8)).save(root / "images" / name)
        Image.fromarray(label).save(root / "masks" / name)
        labels[name] = label
    return labels


def test_masks_to_coco_to_masks_is_lossless(tmp_path: Path) -> None:
    labels = _indexed_dataset(tmp_path / "src")
    convert(tmp_path / "src", "coco", tmp_path / "coco")
    coco = load_annotations(tmp_path / "coco")
    assert coco.format == "coco"
    assert coco.class_map.names == ("crack", "blob", "stain")
    convert(tmp_path / "coco", "masks", tmp_path / "back")
    for name, label in labels.items():
        assert np.array_equal(read_label_png(tmp_path / "back" / "masks" / name), label), name
    original = load_annotations(tmp_path / "src")
    back = load_annotations(tmp_path / "back")
    assert _boxes(back) == _boxes(original)


def _boxes(a: AnnotationSet) -> list:
    return sorted((r.file_name, i.class_id, i.box) for r in a for i in r.instances)


def test_masks_to_yolo_keeps_boxes_and_classes(tmp_path: Path) -> None:
    _indexed_dataset(tmp_path / "src")
    convert(tmp_path / "src", "yolo", tmp_path / "yolo")
    original = load_annotations(tmp_path / "src")
    back = load_annotations(tmp_path / "yolo")

    def key(a: AnnotationSet) -> list:
        return sorted(
            (r.file_name, a.class_map.name(i.class_id), _rounded(i.box)) for r in a for i in r.instances
        )

    assert key(back) == key(original)


def _rounded(box: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(round(v, 3) for v in box)


def test_unknown_target_format_writes_nothing(tmp_path: Path) -> None:
    _indexed_dataset(tmp_path / "src")
    with pytest.raises(DataError, match="unknown output format"):
        convert(tmp_path / "src", "pdf", tmp_path / "out")
    assert not (tmp_path / "out").exists()
