"""The parts of ``report.html`` an inspection engineer reads besides the metrics table.

* **Training curves** from a run's ``metrics.csv``: train loss and the val scores per epoch (from 1).
* **The image-level view**: what an inspection line lives by. An image is *flagged* when the model
  predicts at least ``A`` defect pixels in it; defect images flagged are *caught*, defect-free images
  flagged are *false alarms*. Shown at the decision the masks were made with (``A = 1``) and as a
  curve over the minimum area ``A``, the knob a line tunes after the pixel threshold.
* **The class confusion matrix** of the focus method: pixels of each true class (rows) by predicted
  class (columns), as counts and as a share of the row.
* **The per-image table**: every scored image, sortable by any column in the page (a few lines of
  inline script; nothing is fetched).
* **A glossary** of the metrics.

Everything is drawn inline (SVG, CSS), so the page still works offline and attached to a ticket.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from weakseg.evaluation.scoring import EvaluationResult, ImageScore

#: Minimum predicted defect areas (pixels) of the image-level curve.
AREA_STEPS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
#: Line colours of the SVG charts, one per series.
SERIES_COLOURS = ("#4a6fd8", "#e07a3e", "#2a9d8f", "#b5179e", "#6a994e", "#8d99ae", "#d62828")

VIEWS_CSS = """
svg.chart{background:#fafbfc;border:1px solid #dde;border-radius:3px}
svg.chart text{font:11px system-ui,sans-serif;fill:#444}
svg.chart .grid{stroke:#e3e6ec;stroke-width:1}
.swatches span{display:inline-block;margin-right:14px;font-size:13px}
.swatches i{display:inline-block;width:14px;height:3px;vertical-align:3px;margin-right:4px}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:after{content:" \\2195";color:#99a}
table.confusion td{min-width:4.5em}
td.neg{color:#b00020;font-weight:600}
dl.glossary dt{font-weight:600;margin-top:6px}dl.glossary dd{margin:0 0 0 16px;color:#333}
"""

SORT_SCRIPT = """
<script>
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var ascending = th.dataset.order !== "asc";
      th.dataset.order = ascending ? "asc" : "desc";
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.v || a.cells[column].textContent;
        var y = b.cells[column].dataset.v || b.cells[column].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return ascending ? c : -c;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
</script>
"""

GLOSSARY: tuple[tuple[str, str], ...] = (
    (
        "binary IoU",
        (
            "defect pixels found and right, over defect pixels predicted or true, every class merged into "
            "one defect class: how well the defects are outlined, whatever their name."
        ),
    ),
    (
        "recall / precision",
        (
            "the share of true defect pixels that are predicted defect / of predicted defect pixels that "
            "are truly defect."
        ),
    ),
    (
        "anomaly mIoU",
        (
            "the mean over the defect classes of each class's IoU (background left out): a defect found "
            "but given the wrong class counts against both classes."
        ),
    ),
    ("mIoU", "the same mean with the background class included, as most papers report it."),
    (
        "caught / false alarm",
        (
            "defect images with at least one predicted defect pixel (or region above the minimum area) / "
            "defect-free images with one."
        ),
    ),
    (
        "dataset-level",
        (
            "one confusion matrix summed over every scored pixel of every image, then the ratios: large "
            "defects weigh more than small ones."
        ),
    ),
    (
        "decision threshold",
        (
            "a pixel is defect where 1 - p(background) reaches it; chosen on the validation split when the "
            "model was trained."
        ),
    ),
)


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(n: int, d: int) -> str:
    return "–" if d == 0 else f"{n}/{d} ({100.0 * n / d:.0f} %)"


# --------------------------------------------------------------------------------------------- charts


def line_chart(
    series: Sequence[tuple[str, Sequence[float], Sequence[float | None]]],
    *,
    x_label: str,
    y_label: str,
    log_x: bool = False,
    y_range: tuple[float, float] | None = None,
    width: int = 420,
    height: int = 220,
) -> str:
    """An inline SVG line chart: ``(name, xs, ys)`` per series (``None`` values are gaps)."""
    left, right, top, bottom = 46, 12, 10, 34
    xs_all = [x for _, xs, _ in series for x in xs]
    ys_all = [y for _, _, ys in series for y in ys if y is not None]
    if not xs_all or not ys_all:
        return ""
    fx = np.log10 if log_x else (lambda v: v)
    x0, x1 = float(fx(min(xs_all))), float(fx(max(xs_all)))
    y0, y1 = y_range if y_range is not None else (min(0.0, min(ys_all)), max(ys_all) or 1.0)
    x1 = x1 if x1 > x0 else x0 + 1.0
    y1 = y1 if y1 > y0 else y0 + 1.0

    def px(x: float) -> float:
        return left + (float(fx(x)) - x0) / (x1 - x0) * (width - left - right)

    def py(y: float) -> float:
        return top + (1.0 - (y - y0) / (y1 - y0)) * (height - top - bottom)

    parts = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    for k in range(5):
        y = y0 + (y1 - y0) * k / 4
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{py(y):.1f}" y2="{py(y):.1f}"/>'
        )
        parts.append(f'<text x="{left - 4}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
    ticks = sorted(set(xs_all))
    if log_x:  # decades only: 1, 10, 100, ... (labels at every step would overlap)
        ticks = [t for t in ticks if float(np.log10(t)).is_integer()]
    for x in ticks[:: max(1, len(ticks) // 10)]:
        label = f"{x:g}"
        parts.append(f'<text x="{px(x):.1f}" y="{height - bottom + 14}" text-anchor="middle">{label}</text>')
    middle = (left + width - right) / 2
    parts.append(f'<text x="{middle:.0f}" y="{height - 4}" text-anchor="middle">{_esc(x_label)}</text>')
    parts.append(
        f'<text x="12" y="{(top + height - bottom) / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {(top + height - bottom) / 2:.0f})">{_esc(y_label)}</text>'
    )
    for index, (name, xs, ys) in enumerate(series):
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        runs: list[list[str]] = [[]]
        for x, y in zip(xs, ys, strict=True):
            if y is None:
                runs.append([])
            else:
                runs[-1].append(f"{px(x):.1f},{py(y):.1f}")
        for run in runs:
            if run:
                points = " ".join(run)
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}">'
                    f"<title>{_esc(name)}</title></polyline>"
                )
            if len(xs) <= 30:  # few points (a short run): mark each, so a single epoch still shows
                for point in run:
                    cx, cy = point.split(",")
                    parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _swatches(names: Sequence[str]) -> str:
    items = "".join(
        f'<span><i style="background:{SERIES_COLOURS[i % len(SERIES_COLOURS)]}"></i>{_esc(n)}</span>'
        for i, n in enumerate(names)
    )
    return f'<div class="swatches">{items}</div>'


# ------------------------------------------------------------------------------------ training curves


def read_curves(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """``{column: [(epoch from 1, value), ...]}`` of a run's ``metrics.csv`` (empty when unreadable)."""
    curves: dict[str, dict[int, float]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                try:
                    epoch = int(float(row.get("epoch") or "")) + 1  # Lightning counts from 0
                except ValueError:
                    continue
                for key, text in row.items():
                    if key in ("epoch", "step") or not text:
                        continue
                    try:
                        curves.setdefault(key, {})[epoch] = float(text)
                    except ValueError:
                        continue
    except OSError:
        return {}
    return {key: sorted(values.items()) for key, values in curves.items()}


def curves_section(path: str | Path | None) -> str:
    """Train loss and the val scores per epoch; nothing when the run left no ``metrics.csv``."""
    curves = read_curves(path) if path is not None else {}
    charts = []
    if "train_loss" in curves:
        epochs, values = zip(*curves["train_loss"], strict=True)
        charts.append(
            '<div class="chart"><h3>train loss</h3>'
            + line_chart([("train loss", epochs, values)], x_label="epoch", y_label="loss")
            + "</div>"
        )
    scores = [
        k
        for k in ("val_anomaly_miou", "val_binary_iou", "val_binary_recall", "val_binary_precision")
        if k in curves
    ]
    if scores:
        series = []
        for key in scores:
            epochs, values = zip(*curves[key], strict=True)
            series.append((key.removeprefix("val_").replace("_", " "), epochs, values))
        charts.append(
            '<div class="chart"><h3>validation</h3>'
            + line_chart(series, x_label="epoch", y_label="score", y_range=(0.0, 1.0))
            + _swatches([name for name, _, _ in series])
            + "</div>"
        )
    if not charts:
        return ""
    return (
        '<section id="curves"><h2>Training</h2><p class="note">Per epoch (from 1), from the run\'s '
        "metrics.csv. The best epoch by the run's monitor was kept.</p>"
        f'<div class="charts">{"".join(charts)}</div></section>'
    )


# --------------------------------------------------------------------------------------- image level


def image_level(scores: Sequence[ImageScore], min_area: int = 1) -> dict[str, int]:
    """Caught defect images and false alarms on defect-free ones, flagging at ``min_area`` pixels."""
    defect = [s for s in scores if s.gt_pixels > 0]
    clean = [s for s in scores if s.gt_pixels == 0]
    return {
        "defect_images": len(defect),
        "caught": sum(1 for s in defect if s.pred_pixels >= min_area),
        "clean_images": len(clean),
        "false_alarms": sum(1 for s in clean if s.pred_pixels >= min_area),
    }


def _area_chart(
    title: str, series: Sequence[tuple[str, Sequence[float], Sequence[float | None]]], names: Sequence[str]
) -> str:
    chart = line_chart(
        series, x_label="minimum defect area (pixels)", y_label="share", log_x=True, y_range=(0.0, 1.0)
    )
    return f'<div class="chart"><h3>{_esc(title)}</h3>{chart}{_swatches(names)}</div>'


def image_level_section(methods: Sequence[tuple[str, EvaluationResult]], decision: str | None) -> str:
    rows = []
    for name, result in methods:
        v = image_level(result.per_image)
        rows.append(
            f'<tr><th>{_esc(name)}</th><td class="num">{_pct(v["caught"], v["defect_images"])}</td>'
            f'<td class="num">{_pct(v["false_alarms"], v["clean_images"])}</td></tr>'
        )
    caught_series, alarm_series = [], []
    for name, result in methods:
        counts = [image_level(result.per_image, a) for a in AREA_STEPS]
        caught_series.append(
            (
                name,
                AREA_STEPS,
                [c["caught"] / c["defect_images"] if c["defect_images"] else None for c in counts],
            )
        )
        alarm_series.append(
            (
                name,
                AREA_STEPS,
                [c["false_alarms"] / c["clean_images"] if c["clean_images"] else None for c in counts],
            )
        )
    names = [name for name, _ in methods]
    charts = (
        '<div class="charts">'
        + _area_chart("defect images caught", caught_series, names)
        + _area_chart("defect-free images falsely flagged", alarm_series, names)
        + "</div>"
    )
    at = _esc(decision) if decision else "the masks as given"
    return (
        '<section id="image-level"><h2>Image level: caught and false alarms</h2>'
        f'<p class="note">An image is flagged when at least one pixel is predicted defect ({at}). '
        "The curves raise the minimum predicted defect area an image needs to be flagged.</p>"
        '<table class="data" id="image-level-table"><thead><tr><th>method</th>'
        "<th>defect images caught</th><th>defect-free images flagged</th></tr></thead><tbody>"
        + "".join(rows)
        + f"</tbody></table>{charts}</section>"
    )


# -------------------------------------------------------------------------------- confusion, per image


def confusion_section(name: str, result: EvaluationResult) -> str:
    cm = np.asarray(result.confusion, dtype=np.int64)
    labels = result.class_names
    head = "".join(f"<th>{_esc(n)}</th>" for n in labels)
    rows = []
    for i, true_name in enumerate(labels):
        total = int(cm[i].sum())
        cells = []
        for j in range(len(labels)):
            share = cm[i, j] / total if total else 0.0
            shade = f"background:rgba(74,111,216,{0.08 + 0.6 * share:.2f})" if total else ""
            text = f"{int(cm[i, j]):,}" + (f"<br><small>{100 * share:.1f} %</small>" if total else "")
            cells.append(f'<td class="num" style="{shade}">{text}</td>')
        rows.append(f"<tr><th>{_esc(true_name)}</th>{''.join(cells)}</tr>")
    return (
        f'<section id="confusion"><h2>Class confusion: {_esc(name)}</h2>'
        '<p class="note">Pixels of each true class (rows) by predicted class (columns), with the share of '
        "the row; the diagonal is right.</p>"
        f'<table class="data confusion"><thead><tr><th>true \\ predicted</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def per_image_section(name: str, result: EvaluationResult) -> str:
    columns = ("image", "true defect px", "predicted defect px", "TP", "FP", "FN", "binary IoU")
    head = "".join(f"<th>{c}</th>" for c in columns)
    rows = []
    for s in sorted(result.per_image, key=lambda s: (s.binary_iou is None, s.binary_iou or 0.0, s.file_name)):
        iou = "–" if s.binary_iou is None else f"{s.binary_iou:.3f}"
        key = "2" if s.binary_iou is None else f"{s.binary_iou:.6f}"
        cells = [f"<td>{_esc(s.file_name)}</td>"]
        cells += [f'<td class="num">{v}</td>' for v in (s.gt_pixels, s.pred_pixels, s.tp, s.fp, s.fn)]
        cells.append(f'<td class="num" data-v="{key}">{iou}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<section id="per-image"><h2>Every image: {_esc(name)}</h2>'
        '<p class="note">Click a column to sort. Images with no defect in either map have no IoU.</p>'
        f'<table class="data sortable" id="per-image-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def glossary_section() -> str:
    items = "".join(f"<dt>{_esc(term)}</dt><dd>{_esc(text)}</dd>" for term, text in GLOSSARY)
    return f'<section id="glossary"><h2>Glossary</h2><dl class="glossary">{items}</dl></section>'
