"""Drawing the outcomes: the colours, overlays and the ``worst.png`` gallery.

The gallery shows, per row, the image, the ground truth as class-coloured outlines over it (see the
legend at the top) and the prediction over it coloured by outcome, defect classes merged:

* green: true positive of the right class,
* yellow: true positive of the wrong defect class (a binary TP, not a per-class TP),
* red: false positive (background predicted as a defect),
* blue: false negative (a defect predicted as background).

Grayscale images are shown as gray. Each row has a caption with its rank, file name and binary IoU.
The colour and blend helpers are public: ``weakseg predict``'s overlays and the HTML report use them.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from weakseg.annotations.images import read_image
from weakseg.annotations.schema import AnnotationSet, ImageRecord
from weakseg.errors import DataError
from weakseg.evaluation.scoring import EvaluationResult, ImageScore, gt_label_map, pred_label_map

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


def to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return image[:, :, :3]


def blend(image: np.ndarray, codes: np.ndarray, lut: np.ndarray) -> np.ndarray:
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
        image = to_rgb(read_image(gt.image_path(record)))
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
    gt_labels, valid = gt_label_map(record, k)
    image = _load_image(gt, record)
    class_lut = np.array([(0, 0, 0)] + [class_colour(c) for c in range(1, k + 1)], dtype=np.float32)
    outcome_lut = np.array([(0, 0, 0)] + [c for _, c in OUTCOMES], dtype=np.float32)
    panels = [image, outline(image, gt_labels, class_lut)]
    for pred in preds:
        codes = _outcome_codes(gt_labels, pred_label_map(pred, record, k))
        if valid is not None:
            codes[~valid] = 0
        panels.append(blend(image, codes, outcome_lut))
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
