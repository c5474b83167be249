"""Pascal VOC reader: layouts, the 1-based inclusive box convention, and per-object errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from weakseg.annotations.readers import ReadOptions, detect_format, load_annotations
from weakseg.annotations.readers.voc import voc_to_box
from weakseg.errors import DataError, IssueLog

W, H = 50, 40


def _image(path: Path, width: int = W, height: int = H) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)


def _xml(
    path: Path,
    filename: str | None,
    objects: list[tuple[str, tuple[float, float, float, float]]],
    size: tuple[int, int] | None = (W, H),
) -> Path:
    parts = ["<annotation>", "<folder>JPEGImages</folder>"]
    if filename is not None:
        parts.append(f"<filename>{filename}</filename>")
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for name, (x0, y0, x1, y1) in objects:
        parts.append(
            f"<object><name>{name}</name><difficult>1</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        )
    parts.append("</annotation>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def test_one_based_inclusive_becomes_half_open() -> None:
    # VOC pixel 1 is our pixel 0; xmax is the last covered pixel (1-based) = our exclusive end.
    assert voc_to_box(1, 1, 10, 5) == (0.0, 0.0, 10.0, 5.0)
    assert voc_to_box(5, 7, 5, 7) == (4.0, 6.0, 5.0, 7.0)  # a single pixel has width 1


def test_devkit_layout(tmp_path: Path) -> None:
    ds = tmp_path / "VOC"
    _image(ds / "JPEGImages" / "001.jpg")
    _image(ds / "JPEGImages" / "002.jpg")
    _image(ds / "JPEGImages" / "003.jpg")  # no XML: unannotated
    _xml(ds / "Annotations" / "001.xml", "001.jpg", [("scratch", (1, 1, 10, 5)), ("dent", (20, 10, 30, 25))])
    _xml(ds / "Annotations" / "002.xml", "002.jpg", [])
    (ds / "ImageSets" / "Main").mkdir(parents=True)
    (ds / "ImageSets" / "Main" / "train.txt").write_text("001\n002\n")
    assert detect_format(ds) == "voc"
    ann = load_annotations(ds)
    assert ann.format == "voc" and ann.root == ds / "JPEGImages"
    assert ann.class_map.names == ("dent", "scratch")  # sorted
    records = ann.by_file_name()
    scratch, dent = records["001.jpg"].instances
    assert (scratch.class_id, scratch.box, scratch.mask) == (2, (0.0, 0.0, 10.0, 5.0), None)
    assert (dent.class_id, dent.box) == (1, (19.0, 9.0, 30.0, 25.0))
    assert records["001.jpg"].source == str(ds / "Annotations" / "001.xml")
    assert records["001.jpg"].split == "train"
    assert records["002.jpg"].annotated and records["002.jpg"].is_negative
    assert records["003.jpg"].annotated is False and records["003.jpg"].split is None


def test_flat_folder_missing_extension_and_missing_size(tmp_path: Path) -> None:
    ds = tmp_path / "flat"
    _image(ds / "a.png", 33, 22)
    _image(ds / "b.jpg")
    _xml(ds / "a.xml", "a", [("crack", (2, 3, 4, 5))], size=None)  # no extension, no <size>
    _xml(ds / "b.xml", "renamed.jpg", [("crack", (1, 1, 2, 2))])  # stale name: found by the xml stem
    assert detect_format(ds) == "voc"
    ann = load_annotations(ds)
    assert ann.root == ds
    records = ann.by_file_name()
    assert records.keys() == {"a.png", "b.jpg"}
    assert records["a.png"].size == (22, 33)
    assert records["a.png"].instances[0].box == (1.0, 2.0, 4.0, 5.0)


def test_class_order_from_options_and_unknown_names(tmp_path: Path) -> None:
    ds = tmp_path / "flat"
    _image(ds / "a.png")
    xml = _xml(
        ds / "a.xml", "a.png", [("pit", (1, 1, 5, 5)), ("stain", (2, 2, 6, 6)), ("crack", (1, 1, 3, 3))]
    )
    issues = IssueLog()
    ann = load_annotations(ds, "voc", ReadOptions(classes=("pit", "crack")), issues)
    assert ann.class_map.names == ("pit", "crack")
    assert [i.class_id for i in ann.images[0].instances] == [1, 2]
    (error,) = issues.errors
    assert error.path == str(xml) and "unknown class 'stain'" in error.problem


def test_bad_objects_are_reported_and_skipped(tmp_path: Path) -> None:
    ds = tmp_path / "flat"
    _image(ds / "a.png")
    xml = ds / "a.xml"
    xml.write_text(
        "<annotation><filename>a.png</filename>"
        "<object><name>crack</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax><ymax>x</ymax></bndbox>"
        "</object><object><name>crack</name></object>"
        "<object><name>crack</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax><ymax>4</ymax></bndbox>"
        "</object></annotation>",
        encoding="utf-8",
    )
    issues = IssueLog()
    ann = load_annotations(ds, "voc", issues=issues)
    assert len(ann.images[0].instances) == 1
    assert [e.problem.split(":")[0] for e in issues.errors] == ["object 1", "object 2"]
    assert all(e.path == str(xml) for e in issues.errors)


def test_malformed_xml_names_the_file(tmp_path: Path) -> None:
    ds = tmp_path / "VOC"
    _image(ds / "JPEGImages" / "a.jpg")
    (ds / "Annotations").mkdir(parents=True)
    (ds / "Annotations" / "a.xml").write_text("<annotation><filename>a.jpg</filename>", encoding="utf-8")
    with pytest.raises(DataError, match=r"a\.xml") as exc:
        load_annotations(ds, "voc")
    assert "malformed XML" in str(exc.value)


def test_escaping_filename_is_kept_and_not_opened(tmp_path: Path) -> None:
    ds = tmp_path / "flat"
    _xml(ds / "a.xml", "../../etc/passwd", [("crack", (1, 1, 4, 4))])
    ann = load_annotations(ds, "voc")
    assert ann.images[0].file_name == "../../etc/passwd"
