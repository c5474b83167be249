"""The synthetic demo set is deterministic, complete and agrees with itself on disk."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from weakseg.annotations.masks import components, decode
from weakseg.annotations.schema import ORIGIN_GT_MASK, AnnotationSet
from weakseg.data.synthetic import CLASSES, GENERATOR_VERSION, generate_synthetic, render_synthetic_image
from weakseg.errors import DataError


@pytest.fixture(scope="module")
def default_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, AnnotationSet]:
    out = tmp_path_factory.mktemp("syn") / "default"
    return out, generate_synthetic(out)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout(default_set: tuple[Path, AnnotationSet]) -> None:
    out, ann = default_set
    assert (out / "classes.txt").read_text().splitlines() == list(CLASSES)
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(r.file_name for r in ann)
    assert sorted(p.name for p in (out / "masks").iterdir()) == sorted(r.file_name for r in ann)
    assert ann.root == out / "images"
    assert len(ann) == 48
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_same_seed_gives_identical_bytes(default_set: tuple[Path, AnnotationSet], tmp_path: Path) -> None:
    out, _ = default_set
    again = tmp_path / "again"
    generate_synthetic(again)
    assert _files(again) == _files(out)


def test_other_seed_differs_in_every_image(tmp_path: Path) -> None:
    a = _files(generate_synthetic(tmp_path / "a", n_images=6, size=(64, 80), seed=1).root)
    b = _files(generate_synthetic(tmp_path / "b", n_images=6, size=(64, 80), seed=2).root)
    assert a != b
    assert all(a[name] != b[name] for name in a)


def test_every_class_negatives_and_both_colour_modes(default_set: tuple[Path, AnnotationSet]) -> None:
    out, ann = default_set
    per_class = {c: sum(1 for r in ann if c in r.class_ids()) for c in ann.class_map.ids}
    assert all(n >= 3 for n in per_class.values()), per_class
    negatives = [r for r in ann if r.is_negative]
    assert len(negatives) == 12  # round(48 * 0.25)
    modes = {Image.open(out / "images" / r.file_name).mode for r in ann}
    assert modes == {"L", "RGB"}
    for record in negatives:
        assert not np.asarray(Image.open(out / "masks" / record.file_name)).any()


def test_masks_match_images_and_annotations(default_set: tuple[Path, AnnotationSet]) -> None:
    out, ann = default_set
    for record in ann:
        image = Image.open(out / "images" / record.file_name)
        mask_file = Image.open(out / "masks" / record.file_name)
        assert mask_file.mode == "L"
        mask = np.asarray(mask_file)
        assert image.size == mask_file.size == (record.width, record.height)
        rebuilt = np.zeros_like(mask)
        for inst in record.instances:
            assert inst.origin == ORIGIN_GT_MASK
            pixels = decode(inst.mask)
            assert not rebuilt[pixels].any(), "instances must not overlap"
            rebuilt[pixels] = inst.class_id
        np.testing.assert_array_equal(rebuilt, mask)
        n_components = sum(len(components(mask == c)) for c in ann.class_map.ids)
        assert len(record.instances) == n_components
        assert record.annotated
        assert record.tags == tuple(sorted(record.class_ids()))


def test_instance_boxes_are_tight(default_set: tuple[Path, AnnotationSet]) -> None:
    _, ann = default_set
    for _, inst in ann.instances():
        ys, xs = np.nonzero(decode(inst.mask))
        assert inst.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert len(xs) >= 10


def test_tags_csv_and_dataset_json(default_set: tuple[Path, AnnotationSet]) -> None:
    out, ann = default_set
    with open(out / "tags.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["image"] for row in rows] == [r.file_name for r in ann]
    for row, record in zip(rows, ann, strict=True):
        expected = [ann.class_map.name(c) for c in record.tags or ()]
        assert (row["tags"].split(";") if row["tags"] else []) == expected
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["seed"] == 0
    assert meta["size"] == [192, 192]
    assert meta["n_images"] == 48
    assert meta["version"] == GENERATOR_VERSION
    assert meta["class_map"] == ann.class_map.to_dict()


def test_defects_are_not_trivially_thresholded(default_set: tuple[Path, AnnotationSet]) -> None:
    """An oracle global threshold should not already solve the task (or the demo proves nothing)."""
    out, ann = default_set
    best = []
    for record in ann:
        if record.is_negative:
            continue
        gray = np.asarray(Image.open(out / "images" / record.file_name).convert("L")).astype(int)
        gt = np.asarray(Image.open(out / "masks" / record.file_name)) > 0
        ious = []
        for t in range(0, 256, 8):
            for pred in (gray < t, gray > t):
                ious.append((pred & gt).sum() / max(1, (pred | gt).sum()))
        best.append(max(ious))
    assert 0.05 < float(np.median(best)) < 0.8


def test_render_is_deterministic_and_keeps_requested_class() -> None:
    images = [
        render_synthetic_image(np.random.default_rng(7), (64, 96), ["blob", "crack"], color=True)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(images[0][0], images[1][0])
    image, label = images[0]
    assert image.shape == (64, 96, 3) and image.dtype == np.uint8
    assert label.shape == (64, 96) and (label == CLASSES.index("blob") + 1).any()


def test_refuses_nonempty_output_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "set"
    generate_synthetic(out, n_images=2, size=(48, 48))
    with pytest.raises(DataError, match="not empty"):
        generate_synthetic(out, n_images=2, size=(48, 48))
    ann = generate_synthetic(out, n_images=3, size=(48, 48), overwrite=True)
    assert len(list((out / "images").iterdir())) == len(ann) == 3


@pytest.mark.parametrize(
    "kwargs",
    [{"n_images": 0}, {"size": (16, 64)}, {"negative_fraction": 1.5}, {"color_fraction": -0.1}],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(DataError):
        generate_synthetic(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_render_rejects_unknown_class() -> None:
    with pytest.raises(ValueError, match="unknown synthetic defect"):
        render_synthetic_image(np.random.default_rng(0), (64, 64), ["dent"], color=False)
