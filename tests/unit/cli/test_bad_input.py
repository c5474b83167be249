"""Every kind of bad input: one clear message naming the file, exit code 2, no partial output."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from weakseg.annotations import masks as mask_ops


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _missing_image(path: Path) -> str:
    (path.parent / "images" / "b.png").unlink()
    return "b.png"


def _truncated_image(path: Path) -> str:
    img = path.parent / "images" / "b.png"
    img.write_bytes(img.read_bytes()[:200])
    return "b.png"


def _not_an_image(path: Path) -> str:
    (path.parent / "images" / "b.png").write_text("hello")
    return "b.png"


def _mask_size(path: Path) -> str:
    def edit(d: dict) -> None:
        d["annotations"][0]["segmentation"] = mask_ops.encode(np.ones((10, 10), dtype=np.uint8))

    _edit_json(path, edit)
    return "mask is 10x10 but the image is 40x32"


def _box_outside(path: Path) -> str:
    _edit_json(path, lambda d: d["annotations"][1].update(bbox=[30, 20, 25, 5]))
    return "outside the 40x32 image"


def _box_zero_area(path: Path) -> str:
    _edit_json(path, lambda d: d["annotations"][1].update(bbox=[3, 3, 0, 5]))
    return "zero area"


def _unknown_class(path: Path) -> str:
    _edit_json(path, lambda d: d["annotations"][1].update(category_id=9))
    return "9"


def _malformed_json(path: Path) -> str:
    path.write_text('{"images": [')
    return "annotations.json"


def _escaping_path(path: Path) -> str:
    _edit_json(path, lambda d: d["images"][1].update(file_name="../../etc/passwd"))
    return "escapes the dataset root"


def _empty(path: Path) -> str:
    _edit_json(path, lambda d: d.update(images=[], annotations=[]))
    return "no images"


BREAKERS = {
    "missing image": _missing_image,
    "truncated image": _truncated_image,
    "not an image": _not_an_image,
    "mask size differs": _mask_size,
    "box outside image": _box_outside,
    "zero-area box": _box_zero_area,
    "unknown class id": _unknown_class,
    "malformed json": _malformed_json,
    "path escapes root": _escaping_path,
    "empty dataset": _empty,
}


@pytest.mark.parametrize("name", sorted(BREAKERS))
def test_bad_coco_input_is_named_and_exits_2(coco_dataset: Path, tmp_path: Path, name: str, run_cli) -> None:
    expected = BREAKERS[name](coco_dataset)
    out = tmp_path / "converted"

    doctor = run_cli("doctor", str(coco_dataset))
    assert doctor.returncode == 2, doctor.stdout + doctor.stderr
    assert expected in doctor.stderr
    assert str(coco_dataset) in doctor.stderr or "b.png" in doctor.stderr

    convert = run_cli("convert", str(coco_dataset), str(out), "--to", "masks")
    assert convert.returncode == 2, convert.stdout + convert.stderr
    assert expected in convert.stderr
    assert "Traceback" not in convert.stderr
    assert not out.exists()
    assert not any(p.name.startswith(".converted") for p in tmp_path.iterdir())

    # pseudo-label checks with doctor's rules before any work (issue 11): nothing written.
    label = run_cli("pseudo-label", str(coco_dataset), "-t", "box", "-o", str(tmp_path / "store"))
    assert label.returncode == 2, label.stdout + label.stderr
    assert expected in label.stderr and "Traceback" not in label.stderr
    assert not (tmp_path / "store").exists()


def test_pseudo_label_skip_invalid_lists_and_counts_what_it_left_out(
    coco_dataset: Path, tmp_path: Path, run_cli
) -> None:
    _box_outside(coco_dataset)  # b.png
    _mask_size(coco_dataset)  # a.png
    store = tmp_path / "store"
    label = run_cli("pseudo-label", str(coco_dataset), "-t", "box", "-o", str(store), "--skip-invalid")
    assert label.returncode == 3, label.stdout + label.stderr
    stderr = " ".join(label.stderr.split())
    assert "skipped: " in stderr and "outside the 40x32 image" in stderr and "mask is 10x10" in stderr
    assert "labelled 0 images" in label.stdout and "2 invalid left out" in " ".join(label.stdout.split())
    _box_outside(coco_dataset)
    _edit_json(coco_dataset, lambda d: d["annotations"].pop(0))  # a.png is fine now
    fine = run_cli(
        "pseudo-label", str(coco_dataset), "-t", "box", "-o", str(tmp_path / "s2"), "--skip-invalid"
    )
    assert fine.returncode == 3 and "1 invalid left out" in " ".join(fine.stdout.split())
    merged = json.loads((tmp_path / "s2" / "pseudo.json").read_text())
    assert [im["file_name"] for im in merged["images"]] == ["a.png"]


def test_valid_dataset_passes(coco_dataset: Path, tmp_path: Path, run_cli) -> None:
    doctor = run_cli("doctor", str(coco_dataset), "--json")
    assert doctor.returncode == 0, doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["images"] == 2
    assert report["instances"] == 2
    assert report["per_class"] == {"crack": 1, "blob": 1}

    out = tmp_path / "converted"
    convert = run_cli("convert", str(coco_dataset), str(out), "--to", "coco")
    assert convert.returncode == 0, convert.stderr
    assert (out / "annotations.json").is_file()


def test_doctor_lists_every_problem_at_once(coco_dataset: Path, run_cli) -> None:
    _box_outside(coco_dataset)  # annotation 2, on b.png
    _edit_json(coco_dataset, lambda d: d["annotations"][0].update(category_id=9))  # annotation 1, on a.png
    (coco_dataset.parent / "images" / "a.png").unlink()
    result = run_cli("doctor", str(coco_dataset), "--json")
    assert result.returncode == 2
    report = json.loads(result.stdout)
    problems = " | ".join(e["problem"] for e in report["errors"])
    assert "outside" in problems
    assert "unknown class" in problems or "9" in problems
    assert "missing" in problems
    assert len(report["errors"]) >= 3


def test_malformed_voc_xml(tmp_path: Path, run_cli) -> None:
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(root / "JPEGImages" / "x.jpg")
    (root / "Annotations" / "x.xml").write_text("<annotation><filename>x.jpg</filename>")
    result = run_cli("doctor", str(root), "--format", "voc")
    assert result.returncode == 2
    assert "x.xml" in result.stderr


def test_malformed_yolo_yaml(tmp_path: Path, run_cli) -> None:
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(root / "images" / "x.png")
    (root / "labels" / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text("names: [a, b\npath: .\n")
    result = run_cli("doctor", str(root / "data.yaml"), "--format", "yolo")
    assert result.returncode == 2
    assert "data.yaml" in result.stderr


def test_unknown_format_and_missing_path(tmp_path: Path, run_cli) -> None:
    result = run_cli("doctor", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    result = run_cli("convert", str(tmp_path), str(tmp_path / "o"), "--to", "pdf", "--format", "coco")
    assert result.returncode == 2


def test_bad_value_map_option(coco_dataset: Path, run_cli) -> None:
    result = run_cli("doctor", str(coco_dataset), "--value-map", "two=crack")
    assert result.returncode == 2
    assert "--value-map" in result.stderr


def test_a_mask_of_another_size_is_not_a_defect_free_image(tmp_path: Path, run_cli) -> None:
    """Issue 11: the mask-folder reader kept such an image as a negative, and pseudo-label labelled it."""
    data = tmp_path / "data"
    for name, mask_size in (("a", 32), ("b", 20)):
        (data / "images").mkdir(parents=True, exist_ok=True)
        (data / "masks").mkdir(exist_ok=True)
        Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(data / "images" / f"{name}.png")
        mask = np.zeros((mask_size, mask_size), dtype=np.uint8)
        mask[4:9, 4:9] = 1
        Image.fromarray(mask).save(data / "masks" / f"{name}.png")
    (data / "classes.txt").write_text("dent\n")
    label = run_cli("pseudo-label", str(data), "-t", "box", "-o", str(tmp_path / "store"))
    assert label.returncode == 2 and "b.png: mask is 20x20" in " ".join(label.stderr.split())
    assert not (tmp_path / "store").exists()
    label = run_cli("pseudo-label", str(data), "-t", "box", "-o", str(tmp_path / "store"), "--skip-invalid")
    assert label.returncode == 3 and "1 invalid left out" in " ".join(label.stdout.split())
    merged = json.loads((tmp_path / "store" / "pseudo.json").read_text())
    assert [im["file_name"] for im in merged["images"]] == ["a.png"]
