"""The evaluation's files: ``metrics.json``, ``per_image.csv``, ``per_class.csv`` and ``worst.png``."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from weakseg.annotations.schema import AnnotationSet
from weakseg.evaluation.drawing import render_gallery
from weakseg.evaluation.scoring import EvaluationResult
from weakseg.utils.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_fmt(v) for v in row])
    return buf.getvalue()


_PER_IMAGE_COLUMNS = (
    "file_name",
    "gt_pixels",
    "pred_pixels",
    "tp",
    "fp",
    "fn",
    "binary_iou",
    "missing_prediction",
)
_PER_CLASS_COLUMNS = (
    "class_id",
    "class_name",
    "iou",
    "recall",
    "precision",
    "f1",
    "tp",
    "fp",
    "fn",
    "gt_pixels",
    "pred_pixels",
)


def write_evaluation(
    result: EvaluationResult,
    out_dir: str | Path,
    *,
    gt: AnnotationSet,
    pred: AnnotationSet,
    title: str,
) -> dict[str, Path]:
    """Write ``metrics.json``, ``per_image.csv``, ``per_class.csv`` and ``worst.png`` (each atomically).

    ``gt`` and ``pred`` are the sets that produced ``result``; they are needed to draw the gallery.
    Returns the written paths by kind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out / "metrics.json",
        "per_image": out / "per_image.csv",
        "per_class": out / "per_class.csv",
        "gallery": out / "worst.png",
    }
    atomic_write_json(paths["metrics"], {"title": title, **result.to_dict()}, indent=2)
    atomic_write_text(
        paths["per_image"],
        _csv_text(
            _PER_IMAGE_COLUMNS, [[getattr(r, c) for c in _PER_IMAGE_COLUMNS] for r in result.per_image]
        ),
    )
    class_rows = [
        [
            m["id"],
            name,
            m["iou"],
            m["recall"],
            m["precision"],
            m["f1"],
            m["tp"],
            m["fp"],
            m["fn"],
            m["gt_pixels"],
            m["pred_pixels"],
        ]
        for name, m in result.metrics["per_class"].items()
    ]
    atomic_write_text(paths["per_class"], _csv_text(_PER_CLASS_COLUMNS, class_rows))
    canvas = render_gallery(result, gt=gt, pred=pred, title=title)
    info = PngInfo()
    info.add_text("rows", str(len(result.worst)))
    info.add_text("title", title)
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG", pnginfo=info)
    atomic_write_bytes(paths["gallery"], buf.getvalue())
    return paths
