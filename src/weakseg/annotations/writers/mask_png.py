"""Indexed PNG masks: ``masks/<file_name>.png`` holding class ids, plus ``classes.txt``.

The output is layout (a) of the ``masks`` reader (images are placed at ``images/<file_name>`` by
:func:`weakseg.annotations.writers.write_annotations`), so it reads back unchanged. A label map holds
one class per pixel: where instances overlap the later one wins, and instance identity is recovered on
reading as connected components. Unannotated images get no mask file, because an all-zero mask would
claim "defect-free".
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from weakseg.annotations.masks import label_map, rle_size
from weakseg.annotations.schema import AnnotationSet
from weakseg.annotations.writers import register_writer
from weakseg.errors import DataError


def mask_file_name(file_name: str) -> str:
    """``masks/``-relative name of an image's mask: the same path with a ``.png`` suffix."""
    return PurePosixPath(file_name).with_suffix(".png").as_posix()


def _check(ann: AnnotationSet) -> None:
    """Refuse what a mask folder cannot hold, before anything is written."""
    box_only = sum(1 for _, inst in ann.instances() if inst.mask is None)
    if box_only:
        raise DataError(
            None,
            f"{box_only} instance(s) have only boxes; a mask folder cannot hold boxes — "
            "convert to coco or yolo instead",
        )
    seen: dict[str, str] = {}
    for record in ann.images:
        for inst in record.instances:
            if inst.mask is not None and rle_size(inst.mask) != record.size:
                h, w = rle_size(inst.mask)
                raise DataError(
                    record.source or record.file_name,
                    f"an instance mask is {w}x{h} but the image {record.file_name} is "
                    f"{record.width}x{record.height}",
                )
        if not record.annotated:
            continue
        name = mask_file_name(record.file_name)
        if name in seen:
            raise DataError(None, f"{seen[name]} and {record.file_name} would share the mask file {name}")
        seen[name] = record.file_name


@register_writer("masks")
def write_mask_png(ann: AnnotationSet, out_dir: Path) -> None:
    """Write ``classes.txt`` and one indexed mask per annotated image."""
    _check(ann)
    out_dir = Path(out_dir)
    dtype = np.uint8 if len(ann.class_map) <= 255 else np.uint16
    masks_root = out_dir / "masks"
    masks_root.mkdir(parents=True, exist_ok=True)
    for record in ann.images:
        if not record.annotated:
            continue
        path = masks_root / mask_file_name(record.file_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(label_map(record, dtype)).save(path, format="PNG")
    (out_dir / "classes.txt").write_text("".join(f"{n}\n" for n in ann.class_map.names), encoding="utf-8")
