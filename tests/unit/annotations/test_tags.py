"""The ``tags`` reader (CSV and folder per class) and merging a tags CSV into another dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from weakseg.annotations.readers import ReadOptions, detect_format, load_annotations
from weakseg.annotations.readers.tags import _detect, merge_tags_csv, read_tags
from weakseg.annotations.schema import AnnotationSet, ClassMap, ImageRecord
from weakseg.errors import DataError, IssueLog


def photo(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 20), dtype=np.uint8)).save(path)
    return path


def read(path: Path, **kw) -> tuple[AnnotationSet, IssueLog]:
    log = IssueLog()
    return read_tags(path, ReadOptions(**kw), log), log


@pytest.fixture
def csv_data(tmp_path: Path) -> Path:
    for k, name in enumerate(("a.jpg", "b.jpg", "c.jpg", "d.jpg", "sub/e.png")):
        photo(tmp_path / name, seed=k)
    csv = tmp_path / "tags.csv"
    csv.write_text(
        "image,tags\na.jpg,scratch\nb.jpg,scratch;dent\nc.jpg,\nd.jpg,OK\nsub/e.png,dent | stain\n"
    )
    return csv


def test_csv_tags(csv_data: Path) -> None:
    ann, log = read(csv_data)
    assert not log.issues
    assert ann.root == csv_data.parent
    assert ann.class_map.names == ("dent", "scratch", "stain")
    recs = ann.by_file_name()
    assert (recs["a.jpg"].tags, recs["a.jpg"].annotated) == ((2,), False)
    assert recs["b.jpg"].tags == (1, 2) and recs["sub/e.png"].tags == (1, 3)
    for neg in ("c.jpg", "d.jpg"):
        assert recs[neg].tags == () and recs[neg].annotated and recs[neg].is_negative
    assert all(r.instances == [] and r.source == str(csv_data) for r in ann)
    assert (recs["a.jpg"].width, recs["a.jpg"].height) == (20, 12)


def test_csv_file_label_rows_add_up_and_images_folder_is_found(tmp_path: Path) -> None:
    photo(tmp_path / "images" / "x.jpg")
    photo(tmp_path / "images" / "y.jpg", seed=1)
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label\nx.jpg,crack\nx.jpg,stain\ny.jpg,good\n")
    ann, log = read(csv)
    assert not log.issues and ann.root == tmp_path / "images"
    recs = ann.by_file_name()
    assert recs["x.jpg"].tags == (1, 2) and recs["y.jpg"].is_negative


@pytest.mark.parametrize(
    "text", ["", "a.jpg,scratch\n", "name,tags\na.jpg,x\n"], ids=["empty", "no-header", "no-image-col"]
)
def test_malformed_csv_raises_naming_the_file(tmp_path: Path, text: str) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text(text)
    with pytest.raises(DataError) as info:
        read(csv)
    assert info.value.path == str(csv)


def test_missing_image_is_an_error_and_skipped(csv_data: Path) -> None:
    with open(csv_data, "a") as fh:
        fh.write("gone.jpg,scratch\n")
    ann, log = read(csv_data)
    [err] = log.errors
    assert err.path == str(csv_data.parent / "gone.jpg")
    assert "gone.jpg" not in ann.by_file_name()


def test_escaping_path_is_refused(csv_data: Path) -> None:
    with open(csv_data, "a") as fh:
        fh.write("../../etc/passwd,scratch\n")
    _, log = read(csv_data)
    [err] = log.errors
    assert "escapes" in err.problem


def test_defect_free_and_defect_in_one_cell_is_an_error(csv_data: Path) -> None:
    csv_data.write_text("image,tags\na.jpg,ok;scratch\n")
    ann, log = read(csv_data)
    [err] = log.errors
    assert err.problem.startswith("line 2: a.jpg is tagged both defect-free")
    assert ann.images[0].tags == (1,)


@pytest.fixture
def tag_folders(tmp_path: Path) -> Path:
    data = tmp_path / "cls"
    photo(data / "DS-scratch" / "a.jpg")
    photo(data / "DS-scratch" / "deep" / "b.jpg", seed=1)
    photo(data / "DS-dent" / "c.png", seed=2)
    photo(data / "DS-good" / "d.jpg", seed=3)
    return data


def test_folder_per_class(tag_folders: Path) -> None:
    ann, log = read(tag_folders)
    assert not log.issues and ann.root == tag_folders
    assert ann.class_map.names == ("dent", "scratch")
    recs = ann.by_file_name()
    assert recs["DS-scratch/deep/b.jpg"].tags == (2,) and not recs["DS-scratch/deep/b.jpg"].annotated
    assert recs["DS-dent/c.png"].tags == (1,)
    assert recs["DS-good/d.jpg"].annotated and recs["DS-good/d.jpg"].tags == ()


def test_folder_with_masks_beside_reads_tags_only(tag_folders: Path) -> None:
    photo(tag_folders / "DS-scratch" / "a.png", seed=9)  # a mask beside a.jpg
    ann, _ = read(tag_folders)
    assert "DS-scratch/a.png" not in ann.by_file_name() and len(ann) == 4


def test_detection(csv_data: Path, tag_folders: Path, tmp_path: Path) -> None:
    assert _detect(csv_data) and _detect(tag_folders)
    assert detect_format(csv_data) == detect_format(tag_folders) == "tags"
    photo(tag_folders / "DS-dent" / "c_mask.png")
    assert not _detect(tag_folders)  # masks beside images: the masks reader's layout
    layout_a = tmp_path / "a"
    photo(layout_a / "images" / "x.jpg")
    photo(layout_a / "masks" / "x.png")
    photo(layout_a / "other" / "y.jpg")
    assert not _detect(layout_a)
    other = tmp_path / "yolo"
    photo(other / "images" / "x.jpg")
    (other / "labels").mkdir()
    (other / "labels" / "x.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    assert not _detect(other)
    single = tmp_path / "single"
    photo(single / "images" / "x.jpg")
    assert not _detect(single)


# ------------------------------------------------------------------------------------------ merging


@pytest.fixture
def dataset(tmp_path: Path) -> AnnotationSet:
    records = [
        ImageRecord("a.jpg", 20, 12, annotated=False),
        ImageRecord("b.jpg", 20, 12, annotated=False),
        ImageRecord("c.jpg", 20, 12, tags=(1,)),
    ]
    return AnnotationSet(tmp_path, ClassMap(("scratch", "dent")), records)


def test_merge_tags_csv(dataset: AnnotationSet, tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("image,tags\na.jpg,dent\nb.jpg,ok\nc.jpg,dent\n")
    log = IssueLog()
    merge_tags_csv(dataset, csv, log)
    assert not log.issues
    recs = dataset.by_file_name()
    assert recs["a.jpg"].tags == (2,) and not recs["a.jpg"].annotated
    assert recs["b.jpg"].tags == () and recs["b.jpg"].is_negative
    assert recs["c.jpg"].tags == (1, 2)


def test_merge_reports_unknown_images_and_classes(dataset: AnnotationSet, tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("image,tags\nzzz.jpg,dent\na.jpg,bubble\n")
    log = IssueLog()
    merge_tags_csv(dataset, csv, log)
    assert [str(e) for e in log.errors] == [
        f"error: {csv}: line 2: image zzz.jpg is not in the dataset",
        f"error: {csv}: line 3: unknown class 'bubble' (known: scratch, dent)",
    ]
    assert dataset.by_file_name()["a.jpg"].tags is None
    assert dataset.class_map.names == ("scratch", "dent")


def test_merge_refuses_defect_free_tag_on_a_defective_image(dataset: AnnotationSet, tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("image,tags\nc.jpg,\n")
    log = IssueLog()
    merge_tags_csv(dataset, csv, log)
    [err] = log.errors
    assert "tagged defect-free" in err.problem and dataset.by_file_name()["c.jpg"].tags == (1,)


def test_load_annotations_merges_tags_csv_option(tmp_path: Path) -> None:
    data = tmp_path / "d"
    photo(data / "images" / "a.jpg")
    photo(data / "images" / "b.jpg", seed=1)
    (data / "masks").mkdir()
    Image.fromarray(np.zeros((12, 20), np.uint8)).save(data / "masks" / "a.png")
    (data / "classes.txt").write_text("scratch\ndent\n")
    csv = tmp_path / "extra.csv"
    csv.write_text("image,tags\nb.jpg,dent\n")
    ann = load_annotations(data, options=ReadOptions(tags_csv=csv))
    assert ann.format == "masks"
    assert ann.by_file_name()["b.jpg"].tags == (2,) and not ann.by_file_name()["b.jpg"].annotated


def test_image_tags_come_from_tags_or_from_boxes_and_masks() -> None:
    from weakseg.annotations.schema import Instance

    assert ImageRecord("a", 4, 4, tags=(2,), annotated=False).image_tags == (2,)
    assert ImageRecord("b", 4, 4, [Instance(3, (0, 0, 1, 1))]).image_tags == (3,)  # derived from a box
    assert ImageRecord("c", 4, 4, [Instance(3, (0, 0, 1, 1))], tags=(1,)).image_tags == (1, 3)
    assert ImageRecord("d", 4, 4).image_tags == ()  # annotated, nothing in it: defect-free
    assert ImageRecord("e", 4, 4, tags=(), annotated=False).image_tags == ()  # tagged OK
    assert ImageRecord("f", 4, 4, annotated=False).image_tags is None  # unlabelled: unknown
