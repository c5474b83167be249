"""The ``masks`` reader: parallel images/ + masks/ trees and folder-per-class (Magnetic Tile) layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from weakseg.annotations.masks import decode
from weakseg.annotations.readers import ReadOptions, detect_format
from weakseg.annotations.readers.mask_folder import (
    _detect,
    pair_beside,
    read_mask_folder,
    strip_shared_prefix,
)
from weakseg.annotations.readers.tags import _detect as detect_tags
from weakseg.annotations.schema import ORIGIN_GT_MASK, AnnotationSet
from weakseg.annotations.writers import write_annotations
from weakseg.errors import IssueLog


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def photo(path: Path, h: int = 40, w: int = 60, seed: int = 0) -> Path:
    return save(path, np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8))


def read(path: Path, **kw) -> tuple[AnnotationSet, IssueLog]:
    log = IssueLog()
    return read_mask_folder(path, ReadOptions(**kw), log), log


def label_maps(ann: AnnotationSet) -> dict[str, np.ndarray]:
    """Per annotated image, the class id of every pixel (as the mask writer would paint it)."""
    out = {}
    for record in ann.images:
        if record.annotated:
            labels = np.zeros(record.size, dtype=np.int32)
            for inst in record.instances:
                labels[decode(inst.mask)] = inst.class_id
            out[record.file_name] = labels
    return out


@pytest.fixture
def indexed(tmp_path: Path) -> Path:
    """Layout (a): two classes, one image with no mask, classes.txt naming background first."""
    data = tmp_path / "data"
    photo(data / "images" / "a.jpg")
    photo(data / "images" / "sub" / "b.png", seed=1)
    photo(data / "images" / "c.jpg", seed=2)
    mask = np.zeros((40, 60), np.uint8)
    mask[2:8, 3:10] = 1
    mask[20:30, 40:55] = 2
    save(data / "masks" / "a.png", mask)
    save(data / "masks" / "sub" / "b.png", np.zeros((40, 60), np.uint8))
    (data / "classes.txt").write_text("background\nscratch\ndent\n")
    return data


def test_parallel_layout_reads_class_ids_and_tight_boxes(indexed: Path) -> None:
    ann, log = read(indexed)
    assert not log.issues
    assert ann.root == indexed / "images"
    assert ann.class_map.names == ("scratch", "dent")
    recs = ann.by_file_name()
    assert set(recs) == {"a.jpg", "sub/b.png", "c.jpg"}
    a = recs["a.jpg"]
    assert a.annotated and a.source == str(indexed / "masks" / "a.png")
    assert [(i.class_id, i.box) for i in a.instances] == [
        (1, (3.0, 2.0, 10.0, 8.0)),
        (2, (40.0, 20.0, 55.0, 30.0)),
    ]
    assert all(i.origin == ORIGIN_GT_MASK and decode(i.mask).shape == (40, 60) for i in a.instances)
    assert decode(a.instances[0].mask).sum() == 6 * 7
    assert recs["sub/b.png"].annotated and recs["sub/b.png"].instances == []
    assert recs["c.jpg"].annotated is False and recs["c.jpg"].source is None


def test_classes_txt_without_background_line_starts_at_one(indexed: Path) -> None:
    (indexed / "classes.txt").write_text("scratch\ndent\n")
    ann, log = read(indexed)
    assert ann.class_map.names == ("scratch", "dent") and not log.errors


def test_names_from_options_when_no_classes_txt(indexed: Path) -> None:
    (indexed / "classes.txt").unlink()
    ann, _ = read(indexed, classes=("s", "d"))
    assert ann.class_map.names == ("s", "d")


def test_value_map_merges_values_and_unlisted_are_background(indexed: Path) -> None:
    (indexed / "classes.txt").unlink()
    mask = np.zeros((40, 60), np.uint8)
    mask[0:10, 0:10] = 3
    mask[0:10, 10:20] = 5
    mask[30:40, 50:60] = 9  # not listed: background, no error
    save(indexed / "masks" / "a.png", mask)
    ann, log = read(indexed, value_map={3: "defect", 5: "defect"})
    assert not log.issues
    insts = ann.by_file_name()["a.jpg"].instances
    assert ann.class_map.names == ("defect",)
    assert [(i.class_id, i.box) for i in insts] == [(1, (0.0, 0.0, 20.0, 10.0))]


def test_auto_names_each_value_seen(indexed: Path) -> None:
    (indexed / "classes.txt").unlink()
    ann, log = read(indexed)
    assert ann.class_map.names == ("class_1", "class_2") and not log.issues


def test_unknown_value_is_an_error_naming_the_mask(indexed: Path) -> None:
    (indexed / "classes.txt").write_text("scratch\n")
    mask = np.zeros((40, 60), np.uint8)
    mask[0:5, 0:5] = 1
    mask[10:20, 10:20] = 7
    save(indexed / "masks" / "a.png", mask)
    _, log = read(indexed)
    [err] = log.errors
    assert err.path == str(indexed / "masks" / "a.png")
    assert err.problem.startswith("unknown class id 7 (known: 1=scratch")


def test_mvtec_mask_suffix(tmp_path: Path) -> None:
    data = tmp_path / "d"
    photo(data / "images" / "000.png")
    mask = np.zeros((40, 60), np.uint8)
    mask[5:15, 5:15] = 255
    save(data / "masks" / "000_mask.png", mask)
    (data / "classes.txt").write_text("defect\n")
    ann, log = read(data)
    [rec] = ann.images
    assert rec.annotated and [i.box for i in rec.instances] == [(5.0, 5.0, 15.0, 15.0)] and not log.issues


def test_palette_png_keeps_indices(tmp_path: Path) -> None:
    data = tmp_path / "d"
    photo(data / "images" / "a.jpg")
    indices = np.zeros((40, 60), np.uint8)
    indices[0:10, 0:10] = 1
    indices[20:30, 20:30] = 2
    pal = Image.fromarray(indices, mode="P")
    pal.putpalette([0, 0, 0, 250, 10, 10, 10, 250, 10] + [0] * (253 * 3))  # colours unrelated to indices
    (data / "masks").mkdir(parents=True)
    pal.save(data / "masks" / "a.png")
    (data / "classes.txt").write_text("red\ngreen\n")
    ann, log = read(data)
    assert not log.issues
    assert label_maps(ann)["a.jpg"].tolist() == indices.tolist()


def test_soft_edged_binary_mask_with_one_class(tmp_path: Path) -> None:
    data = tmp_path / "d"
    photo(data / "images" / "a.jpg")
    mask = np.zeros((40, 60), np.uint8)
    mask[10:20, 10:20] = 255
    mask[9, 10:20] = 200  # soft edge above the threshold: defect
    mask[20, 10:20] = 60  # soft edge below it: background
    mask[30:35, 40:45] = 100  # a faint blob, below the threshold everywhere
    save(data / "masks" / "a.png", mask)
    (data / "classes.txt").write_text("crack\n")
    ann, log = read(data)
    assert not log.issues
    [inst] = ann.images[0].instances
    assert inst.box == (10.0, 9.0, 20.0, 20.0) and decode(inst.mask).sum() == 110


def test_mask_size_mismatch_is_an_error_and_record_unannotated(indexed: Path) -> None:
    save(indexed / "masks" / "a.png", np.ones((20, 30), np.uint8))
    ann, log = read(indexed)
    [err] = log.errors
    assert err.path == str(indexed / "masks" / "a.png")
    assert err.problem == f"mask is 30x20 but its image {indexed / 'images' / 'a.jpg'} is 60x40"
    rec = ann.by_file_name()["a.jpg"]
    assert rec.annotated is False and rec.instances == []


def test_specks_below_min_area_are_dropped_and_diagonals_connect(tmp_path: Path) -> None:
    data = tmp_path / "d"
    photo(data / "images" / "a.jpg")
    mask = np.zeros((40, 60), np.uint8)
    mask[0:3, 0:3] = 1  # 9 px: a speck at the default min_area of 10
    for k in range(12):  # a 12 px diagonal line: one 8-connected component
        mask[20 + k, 30 + k] = 1
    save(data / "masks" / "a.png", mask)
    (data / "classes.txt").write_text("crack\n")
    ann, _ = read(data)
    assert [i.box for i in ann.images[0].instances] == [(30.0, 20.0, 42.0, 32.0)]
    ann, _ = read(data, min_area=5)
    assert len(ann.images[0].instances) == 2


def test_missing_or_unreadable_image_is_an_error_and_skipped(indexed: Path) -> None:
    bad = indexed / "images" / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    ann, log = read(indexed)
    assert "broken.jpg" not in ann.by_file_name()
    assert [e.path for e in log.errors] == [str(bad)]


def test_orphan_mask_is_a_warning(indexed: Path) -> None:
    save(indexed / "masks" / "ghost.png", np.zeros((4, 4), np.uint8))
    _, log = read(indexed)
    assert [w.path for w in log.warnings] == [str(indexed / "masks" / "ghost.png")]


def test_annotations_folder_name_is_accepted(indexed: Path) -> None:
    (indexed / "masks").rename(indexed / "annotations")
    assert _detect(indexed)
    ann, _ = read(indexed)
    assert ann.by_file_name()["a.jpg"].annotated


def test_round_trip_masks_to_masks(indexed: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    for k in range(4):  # random blobs of three classes, overlapping freely
        photo(indexed / "images" / f"r{k}.jpg", seed=k)
        mask = np.zeros((40, 60), np.uint8)
        for _ in range(5):
            y, x = rng.integers(0, 30), rng.integers(0, 50)
            mask[y : y + rng.integers(4, 10), x : x + rng.integers(4, 10)] = rng.integers(1, 3)
        save(indexed / "masks" / f"r{k}.png", mask)
    ann, _ = read(indexed)
    out = write_annotations(ann, "masks", tmp_path / "out")
    assert _detect(out)
    back, log = read(out)
    assert not log.issues
    assert back.class_map == ann.class_map
    assert [(r.file_name, r.annotated, r.size) for r in back] == [
        (r.file_name, r.annotated, r.size) for r in ann
    ]
    before, after = label_maps(ann), label_maps(back)
    assert before.keys() == after.keys()
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])


# -------------------------------------------------------------------------- folder per class (layout b)


@pytest.fixture
def per_class(tmp_path: Path) -> Path:
    """A small Magnetic-Tile look-alike: MT_<Class>/Imgs/x.jpg + x.png (0/255, soft edges)."""
    data = tmp_path / "mt"
    imgs = {"MT_Blowhole": ["b1", "b2"], "MT_Crack": ["c1"], "MT_Free": ["f1", "f2"]}
    for k, (folder, stems) in enumerate(imgs.items()):
        for j, stem in enumerate(stems):
            photo(data / folder / "Imgs" / f"{stem}.jpg", h=30, w=50, seed=10 * k + j)
            save(data / folder / "Imgs" / f"{stem}.png", np.zeros((30, 50), np.uint8))
    mask = np.zeros((30, 50), np.uint8)
    mask[5:10, 5:10] = 255
    mask[4, 5:10] = 90  # soft edge, dropped
    mask[20:25, 30:45] = 255
    mask[0, 49] = 255  # a 1 px speck
    save(data / "MT_Blowhole" / "Imgs" / "b1.png", mask)
    line = np.zeros((30, 50), np.uint8)
    line[15, 0:40] = 255
    save(data / "MT_Crack" / "Imgs" / "c1.png", line)
    photo(data / "MT_Crack" / "Imgs" / "c2.jpg", h=30, w=50, seed=99)  # no mask: tag only
    return data


def test_folder_per_class_layout(per_class: Path) -> None:
    ann, log = read(per_class)
    assert ann.root == per_class
    assert ann.class_map.names == ("Blowhole", "Crack")
    recs = ann.by_file_name()
    assert len(recs) == 6  # masks beside the images are not images
    b1 = recs["MT_Blowhole/Imgs/b1.jpg"]
    assert b1.annotated and b1.tags == (1,) and b1.source == str(per_class / "MT_Blowhole/Imgs/b1.png")
    assert [(i.class_id, i.box) for i in b1.instances] == [
        (1, (5.0, 5.0, 10.0, 10.0)),
        (1, (30.0, 20.0, 45.0, 25.0)),
    ]
    c1 = recs["MT_Crack/Imgs/c1.jpg"]
    assert [(i.class_id, i.box) for i in c1.instances] == [(2, (0.0, 15.0, 40.0, 16.0))]
    c2 = recs["MT_Crack/Imgs/c2.jpg"]
    assert c2.annotated is False and c2.tags == (2,) and c2.instances == []
    for stem in ("f1", "f2"):
        free = recs[f"MT_Free/Imgs/{stem}.jpg"]
        assert free.annotated and free.tags == () and free.instances == [] and free.is_negative
    # b2 has an all-zero mask in a defect folder: kept as tag-only (not a negative), warned about
    b2 = recs["MT_Blowhole/Imgs/b2.jpg"]
    assert not b2.annotated and not b2.is_negative and b2.instances == [] and b2.tags == (1,)
    [warn] = log.warnings
    assert warn.path == str(per_class / "MT_Blowhole/Imgs/b2.png")
    assert warn.problem == (
        "folder says Blowhole but the mask holds no defect of >= 10 px; kept as an image-level tag only"
    )
    assert not log.errors


def test_folder_per_class_honours_negative_names_and_threshold(per_class: Path) -> None:
    ann, _ = read(per_class, negative_names=("crack",), binary_threshold=60)
    assert ann.class_map.names == ("Blowhole", "Free")
    b1 = ann.by_file_name()["MT_Blowhole/Imgs/b1.jpg"]
    assert b1.instances[0].box == (5.0, 4.0, 10.0, 10.0)  # the 90-valued edge is now defect


def test_folder_per_class_mask_size_mismatch(per_class: Path) -> None:
    bad = save(per_class / "MT_Crack" / "Imgs" / "c1.png", np.zeros((10, 10), np.uint8))
    ann, log = read(per_class)
    [err] = log.errors
    assert err.path == str(bad) and err.problem.startswith("mask is 10x10 but its image")
    rec = ann.by_file_name()["MT_Crack/Imgs/c1.jpg"]
    assert rec.annotated is False and rec.instances == [] and rec.tags == (2,)


def test_strip_shared_prefix() -> None:
    assert strip_shared_prefix(["MT_Blowhole", "MT_Break", "MT_Free"]) == ["Blowhole", "Break", "Free"]
    assert strip_shared_prefix(["cls-a", "cls-b"]) == ["a", "b"]
    assert strip_shared_prefix(["scratch", "stain"]) == ["scratch", "stain"]  # "s" is no prefix
    assert strip_shared_prefix(["MT_A"]) == ["MT_A"]


def test_pair_beside_finds_masks_and_orphans(tmp_path: Path) -> None:
    names = ["a.jpg", "a.png", "b.png", "b_mask.png", "c.bmp", "z_mask.png", "notes.txt"]
    pairs, orphans = pair_beside(tmp_path, names)
    assert pairs == [
        (tmp_path / "a.jpg", tmp_path / "a.png"),
        (tmp_path / "b.png", tmp_path / "b_mask.png"),
        (tmp_path / "c.bmp", None),
    ]
    assert orphans == [tmp_path / "z_mask.png"]


def test_detection(indexed: Path, per_class: Path, tmp_path: Path) -> None:
    assert _detect(indexed) and _detect(per_class)
    assert not detect_tags(indexed) and not detect_tags(per_class)
    plain = tmp_path / "plain"
    photo(plain / "ok" / "a.jpg")
    photo(plain / "scratch" / "b.jpg")
    assert not _detect(plain) and detect_tags(plain)
    assert [detect_format(p) for p in (indexed, per_class, plain)] == ["masks", "masks", "tags"]
    assert not _detect(indexed / "classes.txt")
