"""Validation: every way a dataset can be wrong, found in one pass.

Readers build records; this module checks them against the files on disk and against each other,
so the same checks apply whatever format the data arrived in.
"""

from __future__ import annotations

import math
from collections import Counter

from weakseg.annotations import masks as mask_ops
from weakseg.annotations.images import check_image, image_size, resolve_inside
from weakseg.annotations.schema import AnnotationSet, ImageRecord, Instance
from weakseg.errors import DataError, IssueLog

#: Boxes may overhang the image by this many pixels (rounding in exported floats) before it is an error.
BOX_TOLERANCE = 0.5


def validate(ann: AnnotationSet, issues: IssueLog, *, decode_images: bool = True) -> set[str]:
    """Check ``ann``, record every problem in ``issues`` and return the file names of the invalid images
    (those with an error), so a job can refuse them or, when told to, leave exactly them out.

    ``decode_images`` decodes every pixel (finds truncated files); without it only headers are read.
    """
    if not ann.images:
        issues.error(ann.root, "the dataset holds no images")
        return set()
    invalid: set[str] = set()
    for name, count in Counter(r.file_name for r in ann.images).items():
        if count > 1:
            issues.error(ann.root / name, f"image is listed {count} times")
            invalid.add(name)
    for record in ann.images:
        before = len(issues.errors)
        _check_record(ann, record, issues, decode_images)
        if len(issues.errors) > before:
            invalid.add(record.file_name)
    return invalid


def _where(ann: AnnotationSet, record: ImageRecord) -> str:
    return record.source or str(ann.root / record.file_name)


def _check_record(ann: AnnotationSet, record: ImageRecord, issues: IssueLog, decode: bool) -> None:
    where = _where(ann, record)
    try:
        path = resolve_inside(ann.root, record.file_name, source=where)
        width, height = check_image(path) if decode else image_size(path)
    except DataError as exc:
        issues.add(exc)
        return
    if (width, height) != (record.width, record.height):
        issues.error(
            where,
            f"image {record.file_name}: annotation says {record.width}x{record.height} "
            f"but the file is {width}x{height}",
        )
        return
    known = set(ann.class_map.ids)
    for tag in record.tags or ():
        if tag not in known:
            issues.error(
                where, f"image {record.file_name}: unknown tag class id {tag} ({ann.class_map.describe()})"
            )
    for index, inst in enumerate(record.instances):
        _check_instance(ann, record, inst, index, issues)


def _check_instance(
    ann: AnnotationSet, record: ImageRecord, inst: Instance, index: int, issues: IssueLog
) -> None:
    where = _where(ann, record)
    what = f"image {record.file_name}, instance {index}"
    if inst.class_id not in ann.class_map.ids:
        issues.error(where, f"{what}: unknown class id {inst.class_id} (known: {ann.class_map.describe()})")
    x0, y0, x1, y1 = inst.box
    if not all(math.isfinite(v) for v in inst.box):
        issues.error(where, f"{what}: box {inst.box} has non-finite coordinates")
        return
    if x1 <= x0 or y1 <= y0:
        issues.error(where, f"{what}: box {_fmt_box(inst.box)} has zero area")
    tol = BOX_TOLERANCE
    if x0 < -tol or y0 < -tol or x1 > record.width + tol or y1 > record.height + tol:
        issues.error(
            where,
            f"{what}: box {_fmt_box(inst.box)} lies outside the {record.width}x{record.height} image",
        )
    if inst.mask is not None:
        mh, mw = mask_ops.rle_size(inst.mask)
        if (mh, mw) != record.size:
            issues.error(where, f"{what}: mask is {mw}x{mh} but the image is {record.width}x{record.height}")
        elif mask_ops.area(inst.mask) == 0:
            issues.warning(where, f"{what}: mask is empty")
    if inst.score is not None and not (0.0 <= inst.score <= 1.0 and math.isfinite(inst.score)):
        issues.error(where, f"{what}: score {inst.score} is not in [0, 1]")


def _fmt_box(box: tuple[float, float, float, float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in box) + ")"
