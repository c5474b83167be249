"""COCO reader and writer: every segmentation flavour, arbitrary category ids, lossless round trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from weakseg.annotations import masks
from weakseg.annotations.readers import ReadOptions, detect_format, load_annotations
from weakseg.annotations.schema import AnnotationSet, ClassMap, ImageRecord, Instance
from weakseg.annotations.writers import write_annotations
from weakseg.annotations.writers.coco import coco_dict
from weakseg.errors import DataError, IssueLog

W, H = 40, 30


def _image(path: Path, width: int = W, height: int = H) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (height, width), dtype=np.uint8)).save(path)


def _uncompressed(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: column-major run lengths, starting with a (possibly empty) zero run."""
    counts, current, run = [], 0, 0
    for value in mask.flatten(order="F").astype(np.uint8):
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return counts


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def coco_dataset(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """A COCO folder mixing every annotation flavour, and the masks it should decode to."""
    ds = tmp_path / "ds"
    for name in ("a.png", "b.png", "neg.png", "sub/d.png"):
        _image(ds / "images" / name)
    rng = np.random.default_rng(1)
    rle_mask = np.zeros((H, W), dtype=bool)
    rle_mask[18:26, 22:35] = True
    rle_mask[20:22, 25:30] = rng.random((2, 5)) > 0.5  # ragged interior
    crowd_mask = np.zeros((H, W), dtype=bool)
    crowd_mask[2:9, 3:12] = True
    pseudo_mask = np.zeros((H, W), dtype=bool)
    pseudo_mask[10:20, 10:15] = True
    polygon_mask = masks.decode(masks.polygons_to_rle([[5, 5, 20, 5, 20, 15, 5, 15]], H, W))
    data = {
        "images": [
            {"id": 10, "file_name": "a.png", "width": W, "height": H},
            {"id": 11, "file_name": "b.png", "width": W, "height": H},
            {"id": 12, "file_name": "neg.png", "width": W, "height": H},
            {"id": 13, "file_name": "sub/d.png"},  # size from the image header
        ],
        "categories": [{"id": 7, "name": "scratch"}, {"id": 3, "name": "dent"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 10,
                "category_id": 3,
                "bbox": [5, 5, 15, 10],
                "area": 150,
                "iscrowd": 0,
                "segmentation": [[5, 5, 20, 5, 20, 15, 5, 15]],
            },
            # compressed RLE, no area, no iscrowd
            {
                "id": 2,
                "image_id": 10,
                "category_id": 7,
                "bbox": [22, 18, 13, 8],
                "segmentation": masks.encode(rle_mask),
            },
            # uncompressed RLE (crowd), no bbox: derived from the mask
            {
                "id": 3,
                "image_id": 11,
                "category_id": 7,
                "iscrowd": 1,
                "segmentation": {"size": [H, W], "counts": _uncompressed(crowd_mask)},
            },
            # box only
            {"id": 4, "image_id": 11, "category_id": 3, "bbox": [1.5, 2.25, 10, 4], "segmentation": []},
            # pseudo mask from a teacher
            {
                "id": 5,
                "image_id": 13,
                "category_id": 3,
                "bbox": [10, 10, 5, 10],
                "segmentation": masks.encode(pseudo_mask),
                "score": 0.75,
                "teacher": "boxgrow",
            },
        ],
    }
    _write_json(ds / "annotations.json", data)
    return ds, {"polygon": polygon_mask, "rle": rle_mask, "crowd": crowd_mask, "pseudo": pseudo_mask}


def _summary(ann: AnnotationSet) -> dict[str, Any]:
    """Everything a lossless round trip must keep, per file name."""
    out = {}
    for record in ann.images:
        out[record.file_name] = {
            "size": record.size,
            "annotated": record.annotated,
            "negative": record.is_negative,
            "tags": None if record.tags is None else [ann.class_map.name(t) for t in record.tags],
            "instances": [
                (
                    ann.class_map.name(i.class_id),
                    tuple(float(v) for v in i.box),
                    i.origin,
                    i.score,
                    i.crowd,
                )
                for i in record.instances
            ],
        }
    return out


def _masks_of(ann: AnnotationSet) -> dict[str, list[np.ndarray | None]]:
    return {
        r.file_name: [None if i.mask is None else masks.decode(i.mask) for i in r.instances]
        for r in ann.images
    }


def test_reads_every_flavour(coco_dataset: tuple[Path, dict[str, np.ndarray]]) -> None:
    ds, expected = coco_dataset
    ann = load_annotations(ds, "coco")
    assert ann.root == ds / "images"
    assert ann.class_map.names == ("dent", "scratch")  # ascending COCO id: 3, 7
    records = ann.by_file_name()
    a, b, neg, d = records["a.png"], records["b.png"], records["neg.png"], records["sub/d.png"]
    assert a.source == str(ds / "annotations.json")

    poly, rle = a.instances
    assert (poly.class_id, poly.box, poly.origin) == (1, (5.0, 5.0, 20.0, 15.0), "gt_mask")
    assert np.array_equal(masks.decode(poly.mask), expected["polygon"])
    assert rle.class_id == 2 and rle.crowd is False
    assert np.array_equal(masks.decode(rle.mask), expected["rle"])

    crowd, box_only = b.instances
    assert crowd.crowd is True and isinstance(crowd.mask["counts"], str)
    assert np.array_equal(masks.decode(crowd.mask), expected["crowd"])
    assert crowd.box == (3.0, 2.0, 12.0, 9.0)
    assert box_only.mask is None and box_only.origin == "box"
    assert box_only.box == (1.5, 2.25, 11.5, 6.25)

    assert neg.annotated and neg.is_negative
    assert (d.width, d.height) == (W, H)
    (pseudo,) = d.instances
    assert pseudo.origin == "pseudo:boxgrow" and pseudo.score == 0.75


def test_coco_round_trip_is_lossless(
    coco_dataset: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    ds, _ = coco_dataset
    first = load_annotations(ds, "coco")
    out = write_annotations(first, "coco", tmp_path / "out")
    written = json.loads((out / "annotations.json").read_text())
    assert [c["id"] for c in written["categories"]] == [1, 2]
    assert all(isinstance(a["segmentation"], (dict, list)) for a in written["annotations"])
    assert all("area" in a and "iscrowd" in a for a in written["annotations"])
    pseudo = [a for a in written["annotations"] if "teacher" in a]
    assert len(pseudo) == 1 and pseudo[0]["score"] == 0.75

    second = load_annotations(out, "coco")
    assert second.class_map == first.class_map
    assert _summary(second) == _summary(first)
    first_masks, second_masks = _masks_of(first), _masks_of(second)
    assert first_masks.keys() == second_masks.keys()
    for name, masks_a in first_masks.items():
        for m1, m2 in zip(masks_a, second_masks[name], strict=True):
            assert (m1 is None) == (m2 is None)
            if m1 is not None:
                assert np.array_equal(m1, m2), name


def test_unannotated_images_and_tags_survive_a_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("x.png", "y.png", "z.png"):
        _image(src / name)
    ann = AnnotationSet(
        src,
        ClassMap(("crack", "pit")),
        [
            ImageRecord("x.png", W, H, [Instance(2, (1.0, 2.0, 5.0, 6.0))], tags=(2,), split="train"),
            ImageRecord("y.png", W, H, annotated=False, tags=()),
            ImageRecord("z.png", W, H),  # annotated negative
        ],
    )
    data = coco_dict(ann)
    assert data["weakseg"]["unannotated"] == ["y.png"]
    assert data["weakseg"]["class_map"] == ann.class_map.to_dict()
    assert data["annotations"][0]["segmentation"] == []
    assert data["annotations"][0]["area"] == 16.0

    back = load_annotations(write_annotations(ann, "coco", tmp_path / "out"), "coco")
    records = back.by_file_name()
    assert records["x.png"].tags == (2,) and records["x.png"].split == "train"
    assert records["y.png"].annotated is False and records["y.png"].tags == ()
    assert records["z.png"].annotated is True and records["z.png"].is_negative
    assert records["x.png"].instances[0].box == (1.0, 2.0, 5.0, 6.0)


def test_detects_folder_and_standard_annotations_subfolder(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    _image(ds / "images" / "a.png")
    data = {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}], "categories": []}
    _write_json(ds / "annotations" / "instances_train.json", data)
    assert detect_format(ds) == "coco"
    assert detect_format(ds / "annotations" / "instances_train.json") == "coco"
    ann = load_annotations(ds)
    assert ann.format == "coco"
    assert ann.root == ds / "images" and ann.images[0].is_negative


def test_file_names_with_images_prefix_pick_the_right_root(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    _image(ds / "images" / "a.png")
    data = {"images": [{"id": 1, "file_name": "images/a.png", "width": W, "height": H}], "categories": []}
    _write_json(ds / "annotations.json", data)
    ann = load_annotations(ds, "coco")
    assert ann.image_path(ann.images[0]).is_file()


def test_malformed_json_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.json") as exc:
        load_annotations(bad, "coco")
    assert "malformed JSON" in str(exc.value)
    with pytest.raises(DataError, match=r"broken\.json"):
        load_annotations(bad)  # auto-detection still lands in the COCO reader


def test_json_without_images_names_the_file(tmp_path: Path) -> None:
    bad = _write_json(tmp_path / "labels.json", {"annotations": [], "categories": []})
    with pytest.raises(DataError, match=r"labels\.json.*images"):
        load_annotations(bad, "coco")


def _one_image(tmp_path: Path, annotations: list[dict[str, Any]]) -> Path:
    _image(tmp_path / "images" / "a.png")
    return _write_json(
        tmp_path / "annotations.json",
        {
            "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
            "categories": [{"id": 5, "name": "crack"}],
            "annotations": annotations,
        },
    )


def test_unknown_category_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = _one_image(
        tmp_path,
        [
            {"id": 1, "image_id": 1, "category_id": 9, "bbox": [0, 0, 2, 2]},
            {"id": 2, "image_id": 1, "category_id": 5, "bbox": [0, 0, 2, 2]},
        ],
    )
    issues = IssueLog()
    ann = load_annotations(path, "coco", issues=issues)
    assert len(ann.images[0].instances) == 1  # the bad one is skipped, the reader carries on
    (error,) = issues.errors
    assert error.path == str(path)
    assert "unknown class id 9" in error.problem and "5=crack" in error.problem
    with pytest.raises(DataError, match=r"annotations\.json"):
        load_annotations(path, "coco")


def test_per_annotation_problems_are_collected(tmp_path: Path) -> None:
    path = _one_image(
        tmp_path,
        [
            {"id": 1, "image_id": 1, "category_id": 5, "segmentation": [[1, 1, 5, 1, 5]]},
            {"id": 2, "image_id": 99, "category_id": 5, "bbox": [0, 0, 2, 2]},
            {"id": 3, "image_id": 1, "category_id": 5, "bbox": [0, 0, 2]},
            {"id": 4, "image_id": 1, "category_id": 5},
        ],
    )
    issues = IssueLog()
    ann = load_annotations(path, "coco", issues=issues)
    assert ann.images[0].instances == []
    problems = [i.problem for i in issues.errors]
    assert len(problems) == 4
    assert "odd number of coordinates" in problems[0]
    assert "unknown image_id 99" in problems[1]
    assert "bbox" in problems[2]
    assert "neither a bbox nor a segmentation" in problems[3]


def test_escaping_file_name_is_kept_and_not_opened(tmp_path: Path) -> None:
    _image(tmp_path / "images" / "a.png")
    path = _write_json(
        tmp_path / "annotations.json",
        {
            "images": [
                {"id": 1, "file_name": "a.png", "width": W, "height": H},
                {"id": 2, "file_name": "../../etc/passwd", "width": W, "height": H},
                {"id": 3, "file_name": "../../etc/shadow"},  # no size: cannot be read, so skipped
            ],
            "categories": [],
        },
    )
    issues = IssueLog()
    ann = load_annotations(path, "coco", issues=issues)
    assert [r.file_name for r in ann.images] == ["a.png", "../../etc/passwd"]
    (error,) = issues.errors
    assert "escapes" in error.problem and error.path == str(path)


def test_missing_image_without_size_is_an_error(tmp_path: Path) -> None:
    _image(tmp_path / "images" / "a.png")
    path = _write_json(
        tmp_path / "annotations.json",
        {
            "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "gone.png"}],
            "categories": [],
        },
    )
    issues = IssueLog()
    ann = load_annotations(path, "coco", ReadOptions(), issues)
    assert [r.file_name for r in ann.images] == ["a.png"]
    assert "gone.png" in issues.errors[0].problem


def _split_file(path: Path, names: list[str], categories: list[dict[str, Any]]) -> None:
    images = [{"id": i + 1, "file_name": n, "width": W, "height": H} for i, n in enumerate(names)]
    anns = [{"id": 1, "image_id": 1, "category_id": categories[0]["id"], "bbox": [1, 1, 5, 5]}]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))


def test_one_coco_file_per_split_is_one_dataset_with_those_splits(tmp_path: Path) -> None:
    """COCO 2017's layout: annotations/instances_{train,val}2017.json, images in train2017/, val2017/."""
    cats = [{"id": 1, "name": "crack"}]
    for split, names in (("train2017", ["a.png", "b.png"]), ("val2017", ["a.png"])):
        _split_file(tmp_path / "annotations" / f"instances_{split}.json", names, cats)
        for name in names:
            _image(tmp_path / split / name)
    assert detect_format(tmp_path) == "coco"
    ann = load_annotations(tmp_path)
    assert {r.file_name: r.split for r in ann.images} == {
        "train2017/a.png": "train",
        "train2017/b.png": "train",
        "val2017/a.png": "val",
    }
    assert all(ann.image_path(r).is_file() for r in ann.images)
    assert [len(r.instances) for r in ann.images] == [1, 0, 1]


def test_split_files_must_share_their_categories(tmp_path: Path) -> None:
    _split_file(tmp_path / "train.json", ["a.png"], [{"id": 1, "name": "crack"}])
    _split_file(tmp_path / "test.json", ["b.png"], [{"id": 1, "name": "scratch"}])
    _image(tmp_path / "images" / "a.png")
    _image(tmp_path / "images" / "b.png")
    with pytest.raises(DataError, match=r"train\.json: categories differ from test\.json: 1=crack vs"):
        load_annotations(tmp_path)
