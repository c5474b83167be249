"""``weakseg doctor``: read, validate and summarise a dataset, listing every problem at once."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weakseg.annotations.readers import ReadOptions, load_annotations
from weakseg.annotations.schema import AnnotationSet
from weakseg.annotations.splits import declared_splits
from weakseg.annotations.validate import validate
from weakseg.errors import DataError, IssueLog


@dataclass
class DoctorReport:
    """What ``doctor`` found: a summary of the data and every problem."""

    path: str
    format: str | None
    summary: dict[str, Any] = field(default_factory=dict)
    issues: IssueLog = field(default_factory=IssueLog)
    annotations: AnnotationSet | None = None

    @property
    def ok(self) -> bool:
        return not self.issues.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "ok": self.ok,
            **self.summary,
            "errors": [i.as_dict() for i in self.issues.errors],
            "warnings": [i.as_dict() for i in self.issues.warnings],
        }


def doctor(
    data: str | Path,
    format: str = "auto",
    options: ReadOptions | None = None,
    *,
    decode_images: bool = True,
) -> DoctorReport:
    """Validate and summarise the dataset at ``data``; never raises for data problems."""
    issues = IssueLog()
    report = DoctorReport(path=str(data), format=None, issues=issues)
    try:
        ann = load_annotations(data, format, options, issues)
    except DataError as exc:
        issues.add(exc)
        return report
    report.format = ann.format
    report.annotations = ann
    validate(ann, issues, decode_images=decode_images)
    report.summary = summarise(ann)
    try:
        declared = declared_splits(ann)
    except DataError as exc:
        issues.add(exc)
        declared = None
    report.summary["splits"] = dict(Counter(declared.values())) if declared else {}
    report.summary["split_source"] = split_plan(declared)
    return report


def split_plan(declared: dict[str, str] | None) -> str:
    """What ``train`` and ``benchmark`` will do with this dataset's splits, in a sentence."""
    if not declared:
        return "none declared: weakseg makes a seeded, stratified 70/15/15 split"
    missing = [s for s in ("val", "test") if s not in set(declared.values())]
    carved = f"; {' and '.join(missing)} carved from train (seeded)" if missing else ""
    return f"declared by the dataset{carved}"


def summarise(ann: AnnotationSet) -> dict[str, Any]:
    """Counts a user checks first: images, instances per class, masks, tags, negatives, sizes."""
    per_class: Counter[int] = Counter()
    masks_per_class: Counter[int] = Counter()
    images_per_class: Counter[int] = Counter()
    tagged_per_class: Counter[int] = Counter()
    origins: Counter[str] = Counter()
    for record in ann.images:
        for cid in {inst.class_id for inst in record.instances}:
            images_per_class[cid] += 1
        for cid in record.tags or ():
            tagged_per_class[cid] += 1
        for inst in record.instances:
            per_class[inst.class_id] += 1
            origins[inst.origin] += 1
            if inst.mask is not None:
                masks_per_class[inst.class_id] += 1
    widths = [r.width for r in ann.images]
    heights = [r.height for r in ann.images]
    annotated = [r for r in ann.images if r.annotated]
    names = {
        cid: ann.class_map.name(cid) if cid in ann.class_map.ids else f"<unknown {cid}>"
        for cid in set(per_class) | set(ann.class_map.ids)
    }
    return {
        "root": str(ann.root),
        "classes": list(ann.class_map.names),
        "images": len(ann.images),
        "annotated_images": len(annotated),
        "unannotated_images": len(ann.images) - len(annotated),
        "images_with_instances": sum(1 for r in ann.images if r.instances),
        "negative_images": sum(1 for r in ann.images if r.is_negative),
        "images_without_annotations": sum(1 for r in ann.images if not r.instances and not r.tags),
        "tagged_images": sum(1 for r in ann.images if r.tags is not None),
        "instances": sum(per_class.values()),
        "boxes": sum(per_class.values()),
        "masks": sum(masks_per_class.values()),
        "origins": dict(sorted(origins.items())),
        "per_class": {names[cid]: per_class.get(cid, 0) for cid in sorted(names)},
        "per_class_detail": {
            names[cid]: {
                "id": cid,
                "instances": per_class.get(cid, 0),
                "masks": masks_per_class.get(cid, 0),
                "images": images_per_class.get(cid, 0),
                "tagged_images": tagged_per_class.get(cid, 0),
            }
            for cid in sorted(names)
        },
        "width_range": [min(widths), max(widths)] if widths else None,
        "height_range": [min(heights), max(heights)] if heights else None,
    }
