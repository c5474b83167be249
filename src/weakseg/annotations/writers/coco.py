"""COCO instances JSON out: ``OUT/annotations.json`` beside ``OUT/images/``.

Category ids are the internal ids (``1..K``), so the file needs no id translation table. Plain COCO
cannot say "this image has not been looked at", so a ``"weakseg"`` block records the class map and the
unannotated images; other COCO tools ignore it, and our reader honours it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from weakseg.annotations import masks
from weakseg.annotations.schema import PSEUDO_PREFIX, AnnotationSet, ImageRecord, Instance, Rle
from weakseg.annotations.writers import register_writer

ANNOTATION_FILE = "annotations.json"


@register_writer("coco")
def write_coco(ann: AnnotationSet, out_dir: Path) -> None:
    """Write ``out_dir/annotations.json`` (images are placed by :func:`write_annotations`)."""
    with open(Path(out_dir) / ANNOTATION_FILE, "w", encoding="utf-8") as fh:
        json.dump(coco_dict(ann), fh, ensure_ascii=False)


def coco_dict(ann: AnnotationSet) -> dict[str, Any]:
    """The whole dataset as a JSON-ready COCO dict (also used to emit predictions)."""
    images, annotations = [], []
    for image_id, record in enumerate(ann.images, start=1):
        images.append(_image_entry(image_id, record, ann))
        for inst in record.instances:
            annotations.append(annotation_entry(len(annotations) + 1, image_id, inst))
    return {
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i, "name": n} for i, n in zip(ann.class_map.ids, ann.class_map.names, strict=True)
        ],
        "weakseg": {
            "class_map": ann.class_map.to_dict(),
            "unannotated": [r.file_name for r in ann.images if not r.annotated],
        },
    }


def _image_entry(image_id: int, record: ImageRecord, ann: AnnotationSet) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": image_id,
        "file_name": record.file_name,
        "width": int(record.width),
        "height": int(record.height),
    }
    if record.tags is not None:
        entry["tags"] = [ann.class_map.name(t) for t in record.tags if t in ann.class_map.ids]
    if record.split is not None:
        entry["split"] = record.split
    return entry


def annotation_entry(ann_id: int, image_id: int, inst: Instance) -> dict[str, Any]:
    """One COCO annotation; box-only instances get an empty segmentation, as COCO tools expect."""
    x0, y0, x1, y1 = (float(v) for v in inst.box)
    mask = _compressed(inst.mask) if inst.mask is not None else None
    entry: dict[str, Any] = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": int(inst.class_id),
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": float(masks.area(mask)) if mask is not None else inst.box_area,
        "iscrowd": int(bool(inst.crowd)),
        "segmentation": mask if mask is not None else [],
    }
    if inst.score is not None:
        entry["score"] = float(inst.score)
    if inst.origin.startswith(PSEUDO_PREFIX):
        entry["teacher"] = inst.origin[len(PSEUDO_PREFIX) :]
    return entry


def _compressed(rle: Rle) -> Rle:
    """RLE with string counts (the JSON form), whatever form the instance holds."""
    if isinstance(rle["counts"], str):
        return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"]}
    if isinstance(rle["counts"], bytes):
        return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}
    return masks.encode(masks.decode(rle))
