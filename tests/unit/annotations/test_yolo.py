"""YOLO reader and writer: both layouts, boxes and polygons, per-line errors, round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from weakseg.annotations import masks
from weakseg.annotations.readers import ReadOptions, detect_format, load_annotations
from weakseg.annotations.schema import AnnotationSet, ClassMap, ImageRecord, Instance
from weakseg.annotations.writers import write_annotations
from weakseg.errors import DataError, IssueLog, WeaksegError

W, H = 64, 48


def _image(path: Path, width: int = W, height: int = H) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _folder_dataset(root: Path, labels: dict[str, str], names: tuple[str, ...] = ("crack", "pit")) -> Path:
    """``images/`` + ``labels/`` + ``classes.txt``; every label key also gets an image."""
    for stem, text in labels.items():
        _image(root / "images" / f"{stem}.png")
        _write(root / "labels" / f"{stem}.txt", text)
    _write(root / "classes.txt", "\n".join(names) + "\n")
    return root


def test_reads_boxes_and_polygons(tmp_path: Path) -> None:
    ds = _folder_dataset(
        tmp_path / "ds",
        {"a": "0 0.5 0.5 0.25 0.5\n1 0.25 0.25 0.5 0.25 0.5 0.5 0.25 0.5\n"},
    )
    _image(ds / "images" / "neg.png")  # no label file while labels/ exists: background
    assert detect_format(ds) == "yolo"
    ann = load_annotations(ds)
    assert ann.format == "yolo" and ann.root == (ds / "images").absolute()
    assert ann.class_map.names == ("crack", "pit")
    records = ann.by_file_name()
    box, poly = records["a.png"].instances
    assert box.class_id == 1 and box.mask is None and box.origin == "box"
    assert box.box == pytest.approx((24.0, 12.0, 40.0, 36.0))
    assert poly.class_id == 2 and poly.origin == "gt_mask"
    assert poly.box == pytest.approx((16.0, 12.0, 32.0, 24.0))
    assert masks.area(poly.mask) == pytest.approx(16 * 12, rel=0.1)
    assert records["a.png"].source == str((ds / "labels" / "a.txt").absolute())
    assert records["neg.png"].annotated and records["neg.png"].is_negative


def test_yolo_to_coco_round_trip(tmp_path: Path) -> None:
    ds = _folder_dataset(
        tmp_path / "ds",
        {
            "a": "0 0.5 0.5 0.25 0.5\n1 0.1 0.1 0.6 0.1 0.6 0.7 0.1 0.7\n",
            "b": "1 0.2 0.3 0.1 0.2\n0 0.5 0.2 0.9 0.5 0.5 0.9 0.1 0.5\n",
            "c": "",
        },
    )
    first = load_annotations(ds, "yolo")
    out = write_annotations(first, "coco", tmp_path / "coco")
    second = load_annotations(out, "coco")
    assert second.class_map == first.class_map
    by_name = second.by_file_name()
    assert by_name.keys() == first.by_file_name().keys()
    for record in first.images:
        other = by_name[record.file_name]
        assert other.is_negative == record.is_negative
        assert len(other.instances) == len(record.instances)
        for a, b in zip(record.instances, other.instances, strict=True):
            assert first.class_map.name(a.class_id) == second.class_map.name(b.class_id)
            assert b.box == pytest.approx(a.box, abs=1e-3)
            assert (a.mask is None) == (b.mask is None)
            if a.mask is not None:
                x0, y0, x1, y1 = a.box
                assert masks.area(b.mask) == pytest.approx(masks.area(a.mask))
                if record.file_name == "a.png":  # an axis-aligned rectangle: area known
                    assert masks.area(b.mask) == pytest.approx((x1 - x0) * (y1 - y0), rel=0.1)


def test_yolo_writer_then_reader_keeps_box_only_instances(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("a.png", "sub/b.png", "neg.png", "unlabelled.png"):
        _image(src / name)
    rng = np.random.default_rng(3)
    boxes = [
        tuple(float(v) for v in (*xy, *(xy + wh)))
        for xy, wh in zip(rng.uniform(0, 30, (3, 2)), rng.uniform(2, 15, (3, 2)), strict=True)
    ]
    ann = AnnotationSet(
        src,
        ClassMap(("crack", "pit", "stain")),
        [
            ImageRecord("a.png", W, H, [Instance(1, boxes[0]), Instance(3, boxes[1])]),
            ImageRecord("sub/b.png", W, H, [Instance(2, boxes[2])]),
            ImageRecord("neg.png", W, H),
            ImageRecord("unlabelled.png", W, H, annotated=False),
        ],
    )
    out = write_annotations(ann, "yolo", tmp_path / "out")
    assert (out / "labels" / "neg.txt").read_text() == ""
    assert not (out / "labels" / "unlabelled.txt").exists()
    assert (out / "labels" / "sub" / "b.txt").is_file()
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["path"] == "." and data["train"] == "images"
    assert data["names"] == {0: "crack", 1: "pit", 2: "stain"}

    back = load_annotations(out)
    assert back.format == "yolo" and back.class_map == ann.class_map
    records = back.by_file_name()
    assert records.keys() == {"a.png", "sub/b.png", "neg.png", "unlabelled.png"}
    for record in ann.images:
        other = records[record.file_name]
        assert [i.class_id for i in other.instances] == [i.class_id for i in record.instances]
        for a, b in zip(record.instances, other.instances, strict=True):
            assert b.box == pytest.approx(a.box, abs=1e-3)
            assert b.mask is None
    assert records["neg.png"].annotated and records["neg.png"].is_negative
    assert records["unlabelled.png"].annotated is False


def test_yolo_writer_writes_masks_as_segments(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _image(src / "a.png")
    mask = np.zeros((H, W), dtype=bool)
    mask[10:30, 20:50] = True
    ann = AnnotationSet(
        src,
        ClassMap(("crack",)),
        [ImageRecord("a.png", W, H, [Instance(1, (20.0, 10.0, 50.0, 30.0), masks.encode(mask), "gt_mask")])],
    )
    out = write_annotations(ann, "yolo", tmp_path / "out")
    (line,) = (out / "labels" / "a.txt").read_text().splitlines()
    fields = line.split()
    assert fields[0] == "0" and len(fields) >= 7 and all(len(f.split(".")[1]) == 6 for f in fields[1:])
    (inst,) = load_annotations(out, "yolo").images[0].instances
    assert inst.mask is not None
    assert masks.area(inst.mask) == pytest.approx(mask.sum(), rel=0.02)
    assert inst.box == pytest.approx((20.0, 10.0, 50.0, 30.0), abs=1e-3)


def test_data_yaml_with_splits(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    for split in ("train", "val"):
        _image(ds / "images" / split / f"{split}1.png")
        _write(ds / "labels" / split / f"{split}1.txt", "1 0.5 0.5 0.5 0.5\n")
    _image(ds / "images" / "val" / "val2.png")
    yaml_path = _write(
        ds / "data.yaml",
        "path: .\ntrain: images/train\nval: images/val\nnc: 2\nnames:\n  0: crack\n  1: pit\n",
    )
    issues = IssueLog()
    ann = load_annotations(yaml_path, issues=issues)
    assert not issues.errors
    assert ann.root == ds.absolute() / "images"
    assert {r.file_name: r.split for r in ann.images} == {
        "train/train1.png": "train",
        "val/val1.png": "val",
        "val/val2.png": "val",
    }
    assert ann.class_map.names == ("crack", "pit")
    assert ann.by_file_name()["val/val2.png"].is_negative


def test_data_yaml_with_image_lists(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    for stem in ("a", "b"):
        _image(ds / "images" / f"{stem}.png")
        _write(ds / "labels" / f"{stem}.txt", "0 0.5 0.5 0.2 0.2\n")
    _write(ds / "train.txt", "./images/a.png\n")
    _write(ds / "val.txt", "images/b.png\n")
    _write(ds / "data.yaml", "train: train.txt\nval: val.txt\nnames: [crack]\n")
    ann = load_annotations(ds, "yolo")
    assert {r.file_name: r.split for r in ann.images} == {"a.png": "train", "b.png": "val"}


def test_split_trees_round_trip_through_the_yolo_writer(tmp_path: Path) -> None:
    ds = tmp_path / "roboflow"
    for split in ("train", "valid"):
        _image(ds / split / "images" / f"{split}.jpg")
        _write(ds / split / "labels" / f"{split}.txt", "0 0.5 0.5 0.25 0.25\n")
    _write(ds / "data.yaml", "train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['crack']\n")
    ann = load_annotations(ds)
    assert ann.root == ds.absolute()
    summary = {r.file_name: (r.split, r.instances[0].box) for r in ann.images}
    assert summary == {
        "train/images/train.jpg": ("train", (24.0, 18.0, 40.0, 30.0)),
        "valid/images/valid.jpg": ("val", (24.0, 18.0, 40.0, 30.0)),
    }
    out = write_annotations(ann, "yolo", tmp_path / "out")
    assert yaml.safe_load((out / "data.yaml").read_text())["val"] == "val.txt"
    back = load_annotations(out)
    assert {r.file_name: (r.split, r.instances[0].box) for r in back.images} == summary


def test_malformed_data_yaml_names_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "data.yaml", "names: [a, b\ntrain: images\n")
    with pytest.raises(DataError, match=r"data\.yaml") as exc:
        load_annotations(tmp_path)
    assert "malformed YAML" in str(exc.value)
    _write(tmp_path / "data.yaml", "- just\n- a list\n")
    with pytest.raises(DataError, match=r"data\.yaml"):
        load_annotations(tmp_path / "data.yaml", "yolo")


def test_bad_lines_are_reported_with_file_and_line(tmp_path: Path) -> None:
    ds = _folder_dataset(
        tmp_path / "ds",
        {
            "a": "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n1 0.1 0.1 0.2 x\n"
            "0 0.1 0.1 0.2 0.2 0.3\n1 0.3 0.3 0.1 0.1\n"
        },
    )
    issues = IssueLog()
    ann = load_annotations(ds, "yolo", issues=issues)
    assert [i.class_id for i in ann.images[0].instances] == [1, 2]
    label = str((ds / "labels" / "a.txt").absolute())
    assert [(i.path, i.problem.split(":")[0]) for i in issues.errors] == [
        (label, "line 2"),
        (label, "line 3"),
        (label, "line 4"),
    ]
    assert "got 4 field(s)" in issues.errors[0].problem
    assert "'x' is not a number" in issues.errors[1].problem
    with pytest.raises(WeaksegError, match=r"a\.txt: line 2"):  # several problems: DataErrors
        load_annotations(ds, "yolo", issues=None)
    _write(ds / "labels" / "a.txt", "0 0.5 0.5 0.2 0.2\n0 0.5\n")
    with pytest.raises(DataError, match=r"a\.txt: line 2"):
        load_annotations(ds, "yolo")


def test_unknown_class_index_names_the_file(tmp_path: Path) -> None:
    ds = _folder_dataset(tmp_path / "ds", {"a": "2 0.5 0.5 0.2 0.2\n"})
    issues = IssueLog()
    load_annotations(ds, "yolo", issues=issues)
    (error,) = issues.errors
    assert error.path.endswith("a.txt")
    assert "line 1: unknown class id 2 (known: 0=crack, 1=pit)" in error.problem


def test_out_of_range_coordinates_are_not_a_reader_error(tmp_path: Path) -> None:
    ds = _folder_dataset(tmp_path / "ds", {"a": "0 1.0 0.5 0.5 0.5\n"})
    issues = IssueLog()
    ann = load_annotations(ds, "yolo", issues=issues)
    assert not issues.errors
    assert ann.images[0].instances[0].box == pytest.approx((48.0, 12.0, 80.0, 36.0))


def test_class_names_from_options_and_missing_names(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    _image(ds / "images" / "a.png")
    _write(ds / "labels" / "a.txt", "0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"classes\.txt"):
        load_annotations(ds, "yolo")
    ann = load_annotations(ds, "yolo", ReadOptions(classes=("scratch",)))
    assert ann.class_map.names == ("scratch",)
