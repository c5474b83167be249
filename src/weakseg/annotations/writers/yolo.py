"""YOLO (ultralytics) out: ``OUT/labels/<file_name>.txt`` beside ``OUT/images/`` and ``OUT/data.yaml``.

Instances with masks become segment lines, one per outer contour (so a mask with two separate blobs
reads back as two instances); box-only instances become ``cls cx cy w h`` lines. Annotated negatives
get an empty label file; unannotated images get none, and since ultralytics reads a missing label file
as background, they are also listed under a ``weakseg`` key in ``data.yaml`` that our reader honours.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from weakseg.annotations import masks
from weakseg.annotations.readers.yolo import label_path
from weakseg.annotations.schema import AnnotationSet, Box, ImageRecord
from weakseg.annotations.writers import register_writer
from weakseg.errors import DataError

SPLIT_KEYS = ("train", "val", "test")


@register_writer("yolo")
def write_yolo(ann: AnnotationSet, out_dir: Path) -> None:
    """Write label files and ``data.yaml`` (images are placed by :func:`write_annotations`)."""
    out_dir = Path(out_dir)
    written: dict[Path, str] = {}
    for record in ann.images:
        if not record.annotated:
            continue
        path = label_file(out_dir, record)
        if path in written:
            raise DataError(
                record.source or record.file_name,
                f"{record.file_name} and {written[path]} would share the label file "
                f"{path.relative_to(out_dir).as_posix()}",
            )
        written[path] = record.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{line}\n" for line in label_lines(record)), encoding="utf-8")
    data = data_yaml(ann)
    for split, names in _split_lists(ann).items():
        (out_dir / f"{split}.txt").write_text("".join(f"./images/{n}\n" for n in names), encoding="utf-8")
    with open(out_dir / "data.yaml", "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh, sort_keys=False, allow_unicode=True)


def label_file(out_dir: Path, record: ImageRecord) -> Path:
    """Where ultralytics looks for the labels of ``OUT/images/<file_name>``.

    That is ``OUT/labels/<file_name>.txt`` unless ``file_name`` itself has an ``images`` folder (the last
    one is the pivot); names that would land outside ``OUT`` are refused.
    """
    rel = PurePosixPath(record.file_name)
    if rel.is_absolute() or ".." in rel.parts or not rel.name:
        raise DataError(
            record.source or record.file_name, f"image path {record.file_name!r} is not inside the dataset"
        )
    return label_path(out_dir / "images" / rel)[0]


def label_lines(record: ImageRecord) -> list[str]:
    """The label lines of one image (YOLO class = internal id - 1)."""
    lines = []
    for inst in record.instances:
        cls = inst.class_id - 1
        polygons = masks.mask_to_polygons(masks.decode(inst.mask)) if inst.mask is not None else []
        if polygons:
            lines += [polygon_line(cls, p, record.width, record.height) for p in polygons]
        else:
            lines.append(box_line(cls, inst.box, record.width, record.height))
    return lines


def box_line(cls: int, box: Box, width: int, height: int) -> str:
    x0, y0, x1, y1 = box
    values = ((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)
    return " ".join([str(cls), *(f"{v:.6f}" for v in values)])


def polygon_line(cls: int, polygon: Sequence[float], width: int, height: int) -> str:
    values = [v / (width if k % 2 == 0 else height) for k, v in enumerate(polygon)]
    return " ".join([str(cls), *(f"{v:.6f}" for v in values)])


def data_yaml(ann: AnnotationSet) -> dict[str, Any]:
    """The ``data.yaml`` mapping: every image under ``images`` unless every record has a known split."""
    data: dict[str, Any] = {"path": "."}
    splits = _split_lists(ann)
    if splits:
        data.update({split: f"{split}.txt" for split in splits})
    else:
        data["train"] = "images"
    data["nc"] = len(ann.class_map)
    data["names"] = dict(enumerate(ann.class_map.names))
    unannotated = [r.file_name for r in ann.images if not r.annotated]
    if unannotated:
        data["weakseg"] = {"unannotated": unannotated}
    return data


def _split_lists(ann: AnnotationSet) -> dict[str, list[str]]:
    """Per-split image lists, only when every record belongs to a YOLO split."""
    if not ann.images or any(r.split not in SPLIT_KEYS for r in ann.images):
        return {}
    return {
        s: [r.file_name for r in ann.images if r.split == s]
        for s in SPLIT_KEYS
        if any(r.split == s for r in ann.images)
    }
