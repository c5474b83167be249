"""The ``masks`` writer: indexed PNG label maps and classes.txt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from weakseg.annotations.images import read_label_png
from weakseg.annotations.masks import box_of, encode
from weakseg.annotations.schema import ORIGIN_GT_MASK, AnnotationSet, ClassMap, ImageRecord, Instance
from weakseg.annotations.writers import write_annotations
from weakseg.annotations.writers.mask_png import mask_file_name, write_mask_png
from weakseg.errors import DataError

H, W = 16, 24


def photo(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (H, W), dtype=np.uint8)).save(path)


def blob(y0: int, y1: int, x0: int, x1: int, class_id: int) -> Instance:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return Instance(class_id, box_of(mask), encode(mask), ORIGIN_GT_MASK)


@pytest.fixture
def ann(tmp_path: Path) -> AnnotationSet:
    root = tmp_path / "src"
    for k, name in enumerate(("a.jpg", "sub/b.png", "c.jpg", "d.jpg")):
        photo(root / name, seed=k)
    records = [
        ImageRecord("a.jpg", W, H, [blob(0, 8, 0, 8, 1), blob(4, 12, 4, 12, 2)]),  # overlapping
        ImageRecord("sub/b.png", W, H, []),  # annotated negative
        ImageRecord("c.jpg", W, H, annotated=False, tags=(1,)),  # tag only
        ImageRecord("d.jpg", W, H, [blob(10, 16, 20, 24, 2)]),
    ]
    return AnnotationSet(root, ClassMap(("scratch", "dent")), records)


def test_writes_label_maps_and_classes(ann: AnnotationSet, tmp_path: Path) -> None:
    out = write_annotations(ann, "masks", tmp_path / "out")
    assert (out / "classes.txt").read_text() == "scratch\ndent\n"
    assert sorted(p.relative_to(out / "masks").as_posix() for p in (out / "masks").rglob("*.png")) == [
        "a.png",
        "d.png",
        "sub/b.png",
    ]
    a = read_label_png(out / "masks" / "a.png")
    assert a.dtype == np.uint8 and a.shape == (H, W)
    expected = np.zeros((H, W), np.uint8)
    expected[0:8, 0:8] = 1
    expected[4:12, 4:12] = 2  # the later instance wins where they overlap
    np.testing.assert_array_equal(a, expected)
    assert not read_label_png(out / "masks" / "sub" / "b.png").any()
    assert (out / "images" / "c.jpg").is_file() and not (out / "masks" / "c.png").exists()
    with Image.open(out / "masks" / "a.png") as img:
        assert img.mode == "L"


def test_many_classes_use_16_bit(tmp_path: Path) -> None:
    names = tuple(f"c{k}" for k in range(300))
    ann = AnnotationSet(tmp_path, ClassMap(names), [ImageRecord("x.jpg", W, H, [blob(0, 4, 0, 4, 300)])])
    out = tmp_path / "out"
    write_mask_png(ann, out)
    labels = read_label_png(out / "masks" / "x.png")
    assert labels.max() == 300 and labels[0, 0] == 300
    assert len((out / "classes.txt").read_text().splitlines()) == 300


def test_box_only_instances_raise_before_writing(ann: AnnotationSet, tmp_path: Path) -> None:
    ann.images[0].instances.append(Instance(1, (0.0, 0.0, 5.0, 5.0)))
    ann.images[3].instances.append(Instance(2, (1.0, 1.0, 3.0, 3.0)))
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"^2 instance\(s\) have only boxes; a mask folder cannot hold boxes"):
        write_annotations(ann, "masks", out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]  # no temporary folder left behind
    with pytest.raises(DataError):
        write_mask_png(ann, out)
    assert not out.exists()


def test_mask_name_collision_is_refused(tmp_path: Path) -> None:
    records = [ImageRecord("x.jpg", W, H, []), ImageRecord("x.png", W, H, [])]
    ann = AnnotationSet(tmp_path, ClassMap(("a",)), records)
    with pytest.raises(DataError, match=r"would share the mask file x\.png"):
        write_mask_png(ann, tmp_path / "out")


def test_mask_file_name() -> None:
    assert mask_file_name("a/b.c.jpg") == "a/b.c.png"
    assert mask_file_name("x.PNG") == "x.png"
