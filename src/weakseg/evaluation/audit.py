"""Score any predicted :class:`AnnotationSet` against ground truth, and write the report files.

The prediction may be a pseudo-label store read back as an annotation set (the teacher audit) or a
student's predictions; both go through the same code, so the student's numbers and its teacher's are
directly comparable. Metrics follow METHODS.md 1.6 (:mod:`weakseg.evaluation.confusion`): one
confusion matrix accumulated over all scored pixels, at the original image resolution unless
``eval_size`` asks for the reference protocol's fixed size (518x518, nearest-neighbour resizing of
both label maps).

Which images are scored (images are matched by ``file_name``):

* GT images with ``annotated=False`` are skipped (``skipped_unannotated``): nothing is known there.
* GT images with any instance lacking a mask (box-only) are skipped (``skipped_no_mask``): their
  pixels cannot be scored. An annotated image with no instance is a known negative and is scored.
* GT instances flagged ``crowd`` are COCO "ignore" regions: their pixels are left out of the counts.
* A scored GT image absent from the prediction counts as an all-background prediction
  (``missing_predictions``); prediction images absent from the GT are ignored
  (``extra_predictions``).

The gallery ``worst.png`` shows, per row, the image, the ground truth over it (one colour per class,
see the legend at the top) and the prediction over it coloured by outcome, defect classes merged:

* green: true positive of the right class,
* yellow: true positive of the wrong defect class (a binary TP, not a per-class TP),
* red: false positive (background predicted as a defect),
* blue: false negative (a defect predicted as background).

Grayscale images are shown as gray. Each row has a caption with its rank, file name and binary IoU.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from rich.table import Table

from weakseg.annotations import masks as mask_ops
from weakseg.annotations.images import read_image
from weakseg.annotations.schema import AnnotationSet, ImageRecord
from weakseg.errors import DataError, WeaksegError
from weakseg.evaluation.confusion import (
    BACKGROUND,
    ConfusionMatrix,
    binary_counts,
    segmentation_metrics,
)
from weakseg.utils.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

#: Gallery layout, in pixels: a header (title + legend), then per image a caption strip, a row of
#: three panels of height ``ROW_HEIGHT`` and a gap.
ROW_HEIGHT = 160
CAPTION_HEIGHT = 20
ROW_GAP = 6
HEADER_HEIGHT = 52
PANEL_GAP = 4

#: Prediction-outcome colours (RGB), in the order of :data:`OUTCOMES`.
TP_COLOUR = (0, 200, 0)
WRONG_CLASS_COLOUR = (255, 215, 0)
FP_COLOUR = (230, 0, 0)
FN_COLOUR = (30, 90, 255)
OUTCOMES = (
    ("TP", TP_COLOUR),
    ("wrong class", WRONG_CLASS_COLOUR),
    ("FP", FP_COLOUR),
    ("FN", FN_COLOUR),
)
_GT_PALETTE = (
    (0, 255, 255),
    (255, 0, 255),
    (255, 140, 0),
    (160, 80, 255),
    (255, 105, 180),
    (0, 160, 160),
    (180, 255, 80),
    (140, 90, 40),
)
_ALPHA = 0.55
_BG = (32, 32, 32)
_TEXT = (235, 235, 235)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class ImageScore:
    """Binary (defect vs background) counts of one scored image."""

    file_name: str
    gt_pixels: int  # ground-truth defect pixels
    pred_pixels: int  # predicted defect pixels
    tp: int
    fp: int
    fn: int
    binary_iou: float | None  # None when the image has no defect pixel in either map
    missing_prediction: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class EvaluationResult:
    """Everything :func:`evaluate_annotations` measured."""

    metrics: dict[str, Any]
    confusion: np.ndarray  # int64 (K+1, K+1), cm[true, pred]
    class_names: tuple[str, ...]  # background first
    per_image: list[ImageScore]
    worst: list[ImageScore]
    counts: dict[str, int] = field(default_factory=dict)
    eval_size: tuple[int, int] | None = None  # (height, width); None = original resolution

    @property
    def images_scored(self) -> int:
        return self.counts.get("images_scored", 0)

    @property
    def skipped_no_mask(self) -> int:
        return self.counts.get("skipped_no_mask", 0)

    @property
    def missing_predictions(self) -> int:
        return self.counts.get("missing_predictions", 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: metrics, counts, class names, confusion matrix and the worst images."""
        return {
            "protocol": {
                "aggregation": "one confusion matrix over all scored pixels (dataset-level, micro)",
                "resolution": "original" if self.eval_size is None else list(self.eval_size),
                "undefined_ratios": "null, left out of every mean",
            },
            "class_names": list(self.class_names),
            "metrics": self.metrics,
            "counts": dict(self.counts),
            "confusion_matrix": self.confusion.tolist(),
            "worst": [s.as_dict() for s in self.worst],
        }


# ----------------------------------------------------------------------------------------------------
# scoring


def _check_class_maps(pred: AnnotationSet, gt: AnnotationSet) -> None:
    if tuple(pred.class_map.names) != tuple(gt.class_map.names):
        raise WeaksegError(
            "the prediction's class map does not match the ground truth's "
            f"(prediction: {pred.class_map.describe()}; ground truth: {gt.class_map.describe()}); "
            "class names and ids must be identical"
        )


def _label_dtype(num_defect_classes: int) -> type[np.integer]:
    return np.uint8 if num_defect_classes < 256 else np.int32


def _check_record(record: ImageRecord, num_defect_classes: int, what: str) -> None:
    for inst in record.instances:
        if not 1 <= inst.class_id <= num_defect_classes:
            raise DataError(
                record.file_name,
                f"{what} instance has class id {inst.class_id}, outside 1..{num_defect_classes}",
            )
        if inst.mask is not None and mask_ops.rle_size(inst.mask) != record.size:
            raise DataError(
                record.file_name,
                f"{what} mask is {mask_ops.rle_size(inst.mask)} (h, w) but the image is {record.size}",
            )


def _gt_labels(record: ImageRecord, num_defect_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Ground-truth label map and the valid-pixel map (``None`` when every pixel counts)."""
    _check_record(record, num_defect_classes, "ground-truth")
    dtype = _label_dtype(num_defect_classes)
    crowd = [inst for inst in record.instances if inst.crowd and inst.mask is not None]
    if not crowd:
        return mask_ops.label_map(record, dtype), None
    plain = dataclasses.replace(record, instances=[i for i in record.instances if not i.crowd])
    valid = np.ones(record.size, dtype=bool)
    for inst in crowd:
        valid &= ~mask_ops.decode(inst.mask)  # type: ignore[arg-type]
    return mask_ops.label_map(plain, dtype), valid


def _pred_labels(pred: ImageRecord | None, gt: ImageRecord, num_defect_classes: int) -> np.ndarray:
    if pred is None:
        return np.zeros(gt.size, dtype=_label_dtype(num_defect_classes))
    if pred.size != gt.size:
        raise DataError(
            gt.file_name,
            f"prediction is {pred.width}x{pred.height} but the ground truth is {gt.width}x{gt.height}",
        )
    _check_record(pred, num_defect_classes, "predicted")
    return mask_ops.label_map(pred, _label_dtype(num_defect_classes))


def _scoreable(record: ImageRecord) -> bool:
    return all(inst.mask is not None for inst in record.instances)


def _normalise_size(eval_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if eval_size is None:
        return None
    if isinstance(eval_size, int):
        h = w = eval_size
    else:
        h, w = (int(v) for v in eval_size)
    if h < 1 or w < 1:
        raise ValueError(f"eval_size must be positive, got {eval_size}")
    return (h, w)


def _resize_nearest(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if arr.shape[:2] == size:
        return arr
    src = arr.astype(np.uint8) if arr.dtype == bool else arr
    if src.dtype not in (np.uint8, np.uint16, np.int16, np.float32):
        src = src.astype(np.int32).astype(np.float32)
    out = cv2.resize(src, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return out.astype(arr.dtype)


def evaluate_annotations(
    pred: AnnotationSet,
    gt: AnnotationSet,
    *,
    worst: int = 12,
    eval_size: int | tuple[int, int] | None = None,
) -> EvaluationResult:
    """Score ``pred`` against ``gt`` (images matched by ``file_name``).

    ``worst`` images with the lowest per-image binary IoU (among images with a ground-truth or a
    predicted defect pixel) are listed in ``result.worst``. ``eval_size`` (``int`` or ``(h, w)``)
    resizes both label maps with nearest-neighbour before counting, as the reference protocol does
    at 518; the default scores at the original resolution. See the module docstring for which images
    are scored or skipped.
    """
    _check_class_maps(pred, gt)
    size = _normalise_size(eval_size)
    k = len(gt.class_map)
    names = (BACKGROUND, *gt.class_map.names)
    acc = ConfusionMatrix(k + 1)
    pred_by_name = pred.by_file_name()
    gt_names = {r.file_name for r in gt.images}
    counts = {
        "images_total": len(gt.images),
        "images_scored": 0,
        "skipped_unannotated": 0,
        "skipped_no_mask": 0,
        "missing_predictions": 0,
        "extra_predictions": sum(1 for name in pred_by_name if name not in gt_names),
    }
    rows: list[ImageScore] = []
    for record in gt.images:
        if not record.annotated:
            counts["skipped_unannotated"] += 1
            continue
        if not _scoreable(record):
            counts["skipped_no_mask"] += 1
            continue
        gt_labels, valid = _gt_labels(record, k)
        pred_record = pred_by_name.get(record.file_name)
        missing = pred_record is None
        counts["missing_predictions"] += int(missing)
        pred_labels = _pred_labels(pred_record, record, k)
        if size is not None:
            gt_labels = _resize_nearest(gt_labels, size)
            pred_labels = _resize_nearest(pred_labels, size)
            valid = None if valid is None else _resize_nearest(valid, size)
        cm = acc.update(gt_labels, pred_labels, valid)
        tp, fp, fn = binary_counts(cm)
        denominator = tp + fp + fn
        rows.append(
            ImageScore(
                file_name=record.file_name,
                gt_pixels=tp + fn,
                pred_pixels=tp + fp,
                tp=tp,
                fp=fp,
                fn=fn,
                binary_iou=None if denominator == 0 else tp / denominator,
                missing_prediction=missing,
            )
        )
        counts["images_scored"] += 1
    ranked = sorted(
        (r for r in rows if r.binary_iou is not None),
        key=lambda r: (r.binary_iou, -(r.fp + r.fn), r.file_name),
    )
    return EvaluationResult(
        metrics=segmentation_metrics(acc.matrix, names),
        confusion=acc.matrix,
        class_names=names,
        per_image=rows,
        worst=ranked[: max(0, int(worst))],
        counts=counts,
        eval_size=size,
    )


# ----------------------------------------------------------------------------------------------------
# files


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


# ----------------------------------------------------------------------------------------------------
# gallery


def gallery_height(rows: int) -> int:
    """Height in pixels of a gallery with ``rows`` images."""
    return HEADER_HEIGHT + rows * (CAPTION_HEIGHT + ROW_HEIGHT + ROW_GAP)


def class_colour(class_id: int) -> tuple[int, int, int]:
    """RGB colour of a defect class in ground-truth overlays (fixed palette, then spread hues)."""
    if class_id <= len(_GT_PALETTE):
        return _GT_PALETTE[class_id - 1]
    hue = int((class_id * 0.618033988749895 % 1.0) * 179)
    hsv = np.array([[[hue, 220, 255]]], dtype=np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return (int(r), int(g), int(b))


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return image[:, :, :3]


def _blend(image: np.ndarray, codes: np.ndarray, lut: np.ndarray) -> np.ndarray:
    out = image.astype(np.float32)
    sel = codes > 0
    out[sel] = (1.0 - _ALPHA) * out[sel] + _ALPHA * lut[codes[sel]]
    return out.round().clip(0, 255).astype(np.uint8)


def outline(image: np.ndarray, labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``image`` with the border of every labelled region drawn in its class colour (``lut[label]``),
    about 1/200 of the image's larger side thick (at least 1 pixel)."""
    out = image.copy()
    thickness = max(1, round(max(labels.shape) / 200))
    for label in np.unique(labels):
        if label == 0:
            continue
        mask = (labels == label).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
        colour = tuple(int(c) for c in lut[int(label)])
        cv2.drawContours(out, contours, -1, colour, thickness)
    return out


def _outcome_codes(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """0 nothing, 1 TP right class, 2 TP wrong class, 3 FP, 4 FN."""
    g = gt > 0
    p = pred > 0
    codes = np.zeros(gt.shape, dtype=np.uint8)
    both = g & p
    codes[both & (gt == pred)] = 1
    codes[both & (gt != pred)] = 2
    codes[p & ~g] = 3
    codes[g & ~p] = 4
    return codes


def to_height(panel: np.ndarray, height: int = ROW_HEIGHT) -> np.ndarray:
    """``panel`` resized to ``height`` rows, aspect kept (area filter down, nearest up: no blur)."""
    h, w = panel.shape[:2]
    new_w = max(1, round(w * height / h))
    interp = cv2.INTER_AREA if h > height else cv2.INTER_NEAREST
    return cv2.resize(panel, (new_w, height), interpolation=interp)


def _load_image(gt: AnnotationSet, record: ImageRecord) -> np.ndarray:
    try:
        image = _rgb(read_image(gt.image_path(record)))
    except DataError:
        image = np.full((record.height, record.width, 3), 96, dtype=np.uint8)
        scale = max(0.3, min(record.width, record.height) / 200)
        cv2.putText(
            image, "image missing", (4, max(12, int(20 * scale))), _FONT, scale, _TEXT, 1, cv2.LINE_AA
        )
        return image
    if image.shape[:2] != record.size:  # annotation and file disagree; align for the overlay only
        image = cv2.resize(image, (record.width, record.height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def overlay_panels(
    gt: AnnotationSet, record: ImageRecord, preds: Sequence[ImageRecord | None]
) -> list[np.ndarray]:
    """The image, its ground truth as class-coloured outlines over it (the defect itself stays visible),
    then each prediction in outcome colours.

    Full-resolution RGB panels; ``None`` in ``preds`` is an all-background prediction. Shared by
    ``worst.png`` and the HTML report (:mod:`weakseg.evaluation.report`) so both use the same colours.
    """
    k = len(gt.class_map)
    gt_labels, valid = _gt_labels(record, k)
    image = _load_image(gt, record)
    class_lut = np.array([(0, 0, 0)] + [class_colour(c) for c in range(1, k + 1)], dtype=np.float32)
    outcome_lut = np.array([(0, 0, 0)] + [c for _, c in OUTCOMES], dtype=np.float32)
    panels = [image, outline(image, gt_labels, class_lut)]
    for pred in preds:
        codes = _outcome_codes(gt_labels, _pred_labels(pred, record, k))
        if valid is not None:
            codes[~valid] = 0
        panels.append(_blend(image, codes, outcome_lut))
    return panels


def _row_panels(
    score: ImageScore, gt: AnnotationSet, pred_by_name: dict[str, ImageRecord], gt_record: ImageRecord
) -> list[np.ndarray]:
    panels = overlay_panels(gt, gt_record, [pred_by_name.get(score.file_name)])
    return [to_height(p) for p in panels]


def _draw_swatches(
    canvas: np.ndarray, x: int, y: int, label: str, items: Sequence[tuple[str, tuple[int, int, int]]]
) -> int:
    """Draw ``label`` then a colour box and name per item on baseline ``y``; returns the end x."""
    scale = 0.45
    cv2.putText(canvas, label, (x, y), _FONT, scale, _TEXT, 1, cv2.LINE_AA)
    x += cv2.getTextSize(label, _FONT, scale, 1)[0][0] + 8
    for name, colour in items:
        cv2.rectangle(canvas, (x, y - 11), (x + 12, y + 1), colour, thickness=-1)
        x += 16
        cv2.putText(canvas, name, (x, y), _FONT, scale, _TEXT, 1, cv2.LINE_AA)
        x += cv2.getTextSize(name, _FONT, scale, 1)[0][0] + 12
    return x


def _header_width(gt: AnnotationSet, title: str) -> int:
    scratch = np.zeros((HEADER_HEIGHT, 4000, 3), dtype=np.uint8)
    legend = _legend_items(gt)
    w1 = _draw_swatches(scratch, 6, 40, "ground truth:", legend)
    w2 = _draw_swatches(scratch, w1 + 10, 40, "prediction:", OUTCOMES)
    t = cv2.getTextSize(_ascii(title), _FONT, 0.55, 1)[0][0] + 12
    return max(w2, t)


def _legend_items(gt: AnnotationSet) -> list[tuple[str, tuple[int, int, int]]]:
    return [(_ascii(n), class_colour(i)) for i, n in zip(gt.class_map.ids, gt.class_map.names, strict=True)]


def render_gallery(
    result: EvaluationResult, *, gt: AnnotationSet, pred: AnnotationSet, title: str
) -> np.ndarray:
    """The ``worst.png`` image as an RGB ``uint8`` array (see the module docstring for the colours)."""
    gt_by_name = gt.by_file_name()
    pred_by_name = pred.by_file_name()
    rows = [_row_panels(s, gt, pred_by_name, gt_by_name[s.file_name]) for s in result.worst]
    row_widths = [sum(p.shape[1] for p in panels) + PANEL_GAP * (len(panels) - 1) + 12 for panels in rows]
    width = max([_header_width(gt, title), 360, *row_widths])
    canvas = np.full((gallery_height(len(rows)), width, 3), _BG, dtype=np.uint8)
    cv2.putText(canvas, _ascii(title), (6, 18), _FONT, 0.55, _TEXT, 1, cv2.LINE_AA)
    x = _draw_swatches(canvas, 6, 40, "ground truth:", _legend_items(gt))
    _draw_swatches(canvas, x + 10, 40, "prediction:", OUTCOMES)
    y = HEADER_HEIGHT
    for rank, (score, panels) in enumerate(zip(result.worst, rows, strict=True), start=1):
        iou = "n/a" if score.binary_iou is None else f"{score.binary_iou:.3f}"
        note = "  (no prediction)" if score.missing_prediction else ""
        caption = (
            f"{rank}. {score.file_name}  binary IoU {iou}  tp {score.tp} fp {score.fp} fn {score.fn}{note}"
        )
        cv2.putText(canvas, _ascii(caption), (6, y + 15), _FONT, 0.45, _TEXT, 1, cv2.LINE_AA)
        y += CAPTION_HEIGHT
        x = 6
        for panel in panels:
            canvas[y : y + ROW_HEIGHT, x : x + panel.shape[1]] = panel
            x += panel.shape[1] + PANEL_GAP
        y += ROW_HEIGHT + ROW_GAP
    return canvas


# ----------------------------------------------------------------------------------------------------
# terminal


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary_table(result: EvaluationResult, title: str | None = None) -> Table:
    m, c = result.metrics, result.counts
    table = Table(title=title or "Evaluation", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, key in (
        ("mIoU (with background)", "miou"),
        ("anomaly mIoU", "anomaly_miou"),
        ("anomaly F1", "anomaly_f1"),
        ("binary IoU", "binary_iou"),
        ("binary recall", "binary_recall"),
        ("binary precision", "binary_precision"),
        ("binary F1", "binary_f1"),
    ):
        table.add_row(label, _num(m.get(key)))
    for label, key in (
        ("images scored", "images_scored"),
        ("skipped: box-only GT", "skipped_no_mask"),
        ("skipped: unannotated", "skipped_unannotated"),
        ("missing predictions", "missing_predictions"),
    ):
        table.add_row(label, str(c.get(key, 0)))
    return table


def class_table(result: EvaluationResult) -> Table:
    table = Table(title="Per class", show_header=True, header_style="bold")
    for name, justify in (
        ("class", "left"),
        ("IoU", "right"),
        ("recall", "right"),
        ("precision", "right"),
        ("F1", "right"),
        ("GT px", "right"),
        ("pred px", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name, row in result.metrics["per_class"].items():
        table.add_row(
            f"{row['id']} {name}",
            _num(row["iou"]),
            _num(row["recall"]),
            _num(row["precision"]),
            _num(row["f1"]),
            str(row["gt_pixels"]),
            str(row["pred_pixels"]),
        )
    return table


def format_metrics_table(result: EvaluationResult, title: str | None = None) -> Table:
    """A rich renderable for the CLI: the summary table above the per-class table."""
    grid = Table.grid(padding=(1, 0))
    grid.add_column()
    grid.add_row(summary_table(result, title))
    grid.add_row(class_table(result))
    return grid
