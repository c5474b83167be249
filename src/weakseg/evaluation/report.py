"""``report.html``: one self-contained page comparing methods scored against the same ground truth.

The page is what a person opens after ``weakseg evaluate`` (or a benchmark). It references nothing
outside itself (inline CSS, images embedded as ``data:`` URIs, bars drawn with CSS widths, charts as
inline SVG, one inline script that sorts the per-image table), so it can be mailed, attached to a
ticket or opened on a machine with no network. Top to bottom it shows (the parts of
:mod:`weakseg.evaluation.report_views` in brackets):

* the title, free notes and the protocol: one confusion matrix over all scored pixels
  (dataset-level), at the original resolution or ``eval_size``, and how many images were scored;
* the metrics table (``id="metrics"``): one row per method with binary IoU, recall, precision,
  anomaly mIoU and the IoU of every defect class, the best value of each column highlighted; then
  any extra tables (timings, ...);
* [training curves from a run's ``metrics.csv``; the image-level view: defect images caught and
  defect-free images falsely flagged, at the decision and over a minimum defect area];
* per-class IoU bars (one bar per method for each defect class) and recall/precision bars per method;
* [the focus method's class confusion matrix];
* the galleries: the images where the focus method (default: the last one) has its lowest per-image
  binary IoU, worst first, then its best defect images, each with the image, the ground truth as
  class-coloured outlines over it and one full-width panel per method in the outcome colours of
  :mod:`weakseg.evaluation.drawing` (green TP, yellow wrong class, red FP, blue FN);
* [every image in a sortable table];
* the configuration (a run's ``config.yaml``, a store's settings) as YAML; [a glossary].

Negative numbers in extra tables (a loss in a gain table) are marked in red.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from weakseg.annotations.schema import AnnotationSet, ImageRecord
from weakseg.evaluation import report_views as views
from weakseg.evaluation.drawing import OUTCOMES, class_colour, overlay_panels, to_height
from weakseg.evaluation.scoring import EvaluationResult, ImageScore
from weakseg.utils.atomic import atomic_write_text

#: Gallery panels taller than this are downscaled before embedding (smaller ones are scaled up by CSS).
PANEL_HEIGHT = 320
JPEG_QUALITY = 85
DASH = "–"

#: Summary columns of the metrics table: (header, key in ``EvaluationResult.metrics``).
SUMMARY_COLUMNS = (
    ("binary IoU", "binary_iou"),
    ("recall", "binary_recall"),
    ("precision", "binary_precision"),
    ("anomaly mIoU", "anomaly_miou"),
)
_OUTCOME_TEXT = {
    "TP": "true positive, right class",
    "wrong class": "defect found, wrong class",
    "FP": "false positive",
    "FN": "missed defect (false negative)",
}

_CSS = (
    """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;background:#fff;
margin:0 auto;padding:16px 24px 40px;max-width:1400px}
h1{font-size:22px;margin:0 0 6px}h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #dde;
padding-bottom:3px}h3{font-size:14px;margin:0 0 4px}
p.note,p.protocol{margin:2px 0;color:#444}p.protocol{font-size:13px}
table.data{border-collapse:collapse;margin:8px 0}
table.data th,table.data td{border:1px solid #d4d8e0;padding:4px 9px}
table.data th{background:#eef1f6;font-weight:600}table.data td.num{text-align:right;
font-variant-numeric:tabular-nums}table.data td.best{background:#d9f2dd;font-weight:700}
table.data caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:12px 24px}
table.bars{border-collapse:collapse;width:100%}table.bars th{text-align:left;font-weight:400;
padding:2px 8px 2px 0;white-space:nowrap;width:1%}table.bars td{padding:2px 0}
table.bars td.val{width:3.5em;text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#eceff4;height:14px;border-radius:2px}.bar span{display:block;height:14px;
border-radius:2px}.fill-iou{background:#4a6fd8}.fill-recall{background:#2a9d8f}
.fill-precision{background:#e09f3e}
.legend{margin:4px 0 10px;font-size:13px}.sw{display:inline-block;width:12px;height:12px;
margin:0 4px 0 10px;vertical-align:-1px;border:1px solid #0004}
.gallery-row{margin:0 0 14px}.caption{font-size:13px;margin:0 0 4px}
.panels{display:grid;grid-auto-flow:column;grid-auto-columns:1fr;gap:6px;background:#202020;padding:6px;
border-radius:3px}
figure{margin:0;min-width:0}figure img{display:block;width:100%;height:auto;image-rendering:pixelated}
figcaption{color:#e8e8e8;font-size:12px;padding-top:2px;white-space:nowrap}
pre{background:#f5f6f8;border:1px solid #dde;padding:10px;overflow-x:auto;font-size:12px}
footer{margin-top:30px;color:#888;font-size:12px}
"""
    + views.VIEWS_CSS
)


@dataclass
class ReportMethod:
    """One compared method: its scores against the report's ground truth and, for the gallery, its masks."""

    name: str
    result: EvaluationResult
    pred: AnnotationSet | None
    group: str = ""


def write_report(
    path: str | Path,
    *,
    title: str,
    gt: AnnotationSet,
    methods: Sequence[ReportMethod],
    focus: str | None = None,
    config: Mapping[str, Any] | str | None = None,
    notes: Sequence[str] = (),
    extra_tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]] = (),
    gallery: int = 8,
    curves: str | Path | None = None,
    decision: str | None = None,
) -> Path:
    """Write the HTML report (atomically) and return its path; see the module docstring for the page.

    Every method must have been scored against ``gt`` with the same class map and resolution, so that
    the rows compare. ``focus`` names the method whose worst images fill the gallery (default: the
    last); methods with ``pred=None`` are left out of the gallery only. ``curves`` is a run's
    ``metrics.csv`` (training curves), ``decision`` the rule that made the masks, in words.
    """
    methods = list(methods)
    _check_methods(methods)
    chosen = _focus_method(methods, focus)
    scored = [(m.name, m.result) for m in methods]
    body = [
        f"<h1>{_esc(title)}</h1>",
        *(f'<p class="note">{_esc(note)}</p>' for note in notes),
        f'<p class="protocol">{_esc(_protocol(methods))}</p>',
        f'<p class="protocol" id="decision">Decision: {_esc(decision)}</p>' if decision else "",
        _metrics_section(methods),
        *(_extra_table(*table) for table in extra_tables),
        views.curves_section(curves),
        views.image_level_section(scored, decision),
        _per_class_section(methods),
        _recall_precision_section(methods),
        views.confusion_section(chosen.name, chosen.result),
        _gallery_section(gt, methods, chosen, gallery),
        _gallery_section(gt, methods, chosen, gallery, best=True),
        views.per_image_section(chosen.name, chosen.result),
        _config_section(config),
        views.glossary_section(),
        _footer(),
        views.SORT_SCRIPT,
    ]
    path = Path(path)
    atomic_write_text(path, _page(title, body))
    return path


# ----------------------------------------------------------------------------------------------------
# checks and formatting


def _check_methods(methods: Sequence[ReportMethod]) -> None:
    """Rows scored with other classes or at another resolution would not compare: refuse them."""
    if not methods:
        raise ValueError("write_report needs at least one method")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    first = methods[0].result
    for m in methods[1:]:
        if m.result.class_names != first.class_names:
            raise ValueError(
                f"method {m.name!r} was scored with classes {m.result.class_names}, "
                f"{methods[0].name!r} with {first.class_names}"
            )
        if m.result.eval_size != first.eval_size:
            raise ValueError(f"method {m.name!r} was scored at another eval_size than {methods[0].name!r}")


def _focus_method(methods: Sequence[ReportMethod], focus: str | None) -> ReportMethod:
    if focus is None:
        return methods[-1]
    for m in methods:
        if m.name == focus:
            return m
    raise ValueError(f"focus {focus!r} is not one of the methods: {', '.join(m.name for m in methods)}")


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None) -> str:
    return DASH if value is None else f"{value:.3f}"


def _cell(value: Any) -> str:
    """Text of an extra-table cell: floats to 3 decimals, ``None`` as a dash."""
    if value is None:
        return DASH
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3f}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _page(title: str, body: Sequence[str]) -> str:
    parts = "\n".join(part for part in body if part)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{parts}\n</body>\n</html>\n"
    )


def _protocol(methods: Sequence[ReportMethod]) -> str:
    first = methods[0].result
    size = first.eval_size
    resolution = (
        "the original resolution" if size is None else f"{size[0]}×{size[1]} (nearest-neighbour resizing)"
    )
    scored = {m.result.images_scored for m in methods}
    if len(scored) == 1:
        images = f"{first.images_scored} images scored"
    else:
        images = "images scored: " + ", ".join(f"{m.name} {m.result.images_scored}" for m in methods)
    c = first.counts
    text = (
        f"Protocol: one confusion matrix over all scored pixels (dataset-level), at {resolution}; "
        f"{images} of {c.get('images_total', 0)} (skipped: {c.get('skipped_no_mask', 0)} with box-only "
        f"ground truth, {c.get('skipped_unannotated', 0)} unannotated). Undefined ratios show as {DASH}."
    )
    missing = [f"{m.name} {m.result.missing_predictions}" for m in methods if m.result.missing_predictions]
    if missing:
        text += " Images with no prediction, scored as all background: " + ", ".join(missing) + "."
    return text


def _footer() -> str:
    from weakseg import __version__

    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    return f"<footer>weakseg {_esc(__version__)} · written {_esc(stamp)}</footer>"


# ----------------------------------------------------------------------------------------------------
# tables and bars


def _defect_classes(methods: Sequence[ReportMethod]) -> tuple[str, ...]:
    return tuple(methods[0].result.class_names[1:])


def _class_iou(result: EvaluationResult, name: str) -> float | None:
    return result.metrics.get("per_class", {}).get(name, {}).get("iou")


def _metric_columns(methods: Sequence[ReportMethod]) -> list[Callable[[EvaluationResult], float | None]]:
    """One getter per numeric column of the metrics table, in order."""
    getters: list[Callable[[EvaluationResult], float | None]] = [
        (lambda r, k=key: r.metrics.get(k)) for _, key in SUMMARY_COLUMNS
    ]
    getters += [(lambda r, n=name: _class_iou(r, n)) for name in _defect_classes(methods)]
    return getters


def _best(values: Sequence[float | None]) -> float | None:
    """The best value as shown (3 decimals), so that equal-looking cells are highlighted together."""
    shown = [round(v, 3) for v in values if v is not None]
    return max(shown) if shown else None


def _metrics_section(methods: Sequence[ReportMethod]) -> str:
    classes = _defect_classes(methods)
    columns = _metric_columns(methods)
    values = [[get(m.result) for get in columns] for m in methods]
    bests = [_best([row[j] for row in values]) if len(methods) > 1 else None for j in range(len(columns))]
    head1 = '<th rowspan="2">method</th><th rowspan="2">group</th>' + "".join(
        f'<th rowspan="2">{_esc(label)}</th>' for label, _ in SUMMARY_COLUMNS
    )
    head2 = ""
    if classes:
        head1 += f'<th colspan="{len(classes)}">IoU per defect class</th>'
        head2 = "".join(f"<th>{_esc(name)}</th>" for name in classes)
    rows = []
    for m, row in zip(methods, values, strict=True):
        cells = "".join(
            f'<td class="num{" best" if v is not None and round(v, 3) == b else ""}">{_num(v)}</td>'
            for v, b in zip(row, bests, strict=True)
        )
        rows.append(f"<tr><th>{_esc(m.name)}</th><td>{_esc(m.group)}</td>{cells}</tr>")
    return (
        '<section id="summary"><h2>Metrics</h2>\n<table id="metrics" class="data">\n'
        f"<thead><tr>{head1}</tr>" + (f"<tr>{head2}</tr>" if head2 else "") + "</thead>\n"
        "<tbody>\n" + "\n".join(rows) + "\n</tbody></table></section>"
    )


def _td(value: Any) -> str:
    """A cell; a negative number (a loss, in a gain table) is marked in red with a true minus sign."""
    if _is_number(value) and float(value) < 0:
        return f'<td class="num neg">−{_esc(_cell(-value))}</td>'
    css = ' class="num"' if _is_number(value) else ""
    return f"<td{css}>{_esc(_cell(value))}</td>"


def _extra_table(caption: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in rows)
    return (
        f'<table class="data extra"><caption>{_esc(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>"
    )


def _bar(value: float | None, kind: str) -> str:
    width = 0.0 if value is None else 100.0 * min(1.0, max(0.0, float(value)))
    return (
        f'<td><div class="bar"><span class="fill-{kind}" style="width:{width:.1f}%"></span></div></td>'
        f'<td class="val">{_num(value)}</td>'
    )


def _chart(heading: str, rows: Sequence[tuple[str, float | None, str]]) -> str:
    """A small bar chart: one ``(label, value in [0, 1], kind)`` per bar."""
    body = "".join(f"<tr><th>{_esc(label)}</th>{_bar(v, kind)}</tr>" for label, v, kind in rows)
    return f'<div class="chart"><h3>{_esc(heading)}</h3><table class="bars">{body}</table></div>'


def _per_class_section(methods: Sequence[ReportMethod]) -> str:
    charts = [
        _chart(f"{name} IoU", [(m.name, _class_iou(m.result, name), "iou") for m in methods])
        for name in _defect_classes(methods)
    ]
    return (
        '<section id="per-class"><h2>IoU per defect class</h2>'
        f'<div class="charts">{"".join(charts)}</div></section>'
    )


def _recall_precision_section(methods: Sequence[ReportMethod]) -> str:
    charts = [
        _chart(
            m.name,
            [
                ("recall", m.result.metrics.get("binary_recall"), "recall"),
                ("precision", m.result.metrics.get("binary_precision"), "precision"),
            ],
        )
        for m in methods
    ]
    return (
        '<section id="recall-precision"><h2>Recall and precision (defect vs background)</h2>'
        f'<div class="charts">{"".join(charts)}</div></section>'
    )


# ----------------------------------------------------------------------------------------------------
# gallery


def _gallery_files(
    methods: Sequence[ReportMethod], focus: ReportMethod, count: int, best: bool = False
) -> list[str]:
    """Images with a defect in the ground truth or any prediction, worst focus IoU first, ``None`` last;
    with ``best``, the defect images with the highest focus IoU, best first."""
    with_defect = {
        s.file_name for m in methods for s in m.result.per_image if s.gt_pixels > 0 or s.pred_pixels > 0
    }
    scores = {s.file_name: s for s in focus.result.per_image}
    if best:
        found = [s for s in focus.result.per_image if s.gt_pixels > 0 and s.binary_iou is not None]
        found.sort(key=lambda s: (-(s.binary_iou or 0.0), s.file_name))
        return [s.file_name for s in found[: max(0, int(count))]]

    def key(name: str) -> tuple[Any, ...]:
        s = scores.get(name)
        if s is None or s.binary_iou is None:
            return (1, 0.0, 0, name)
        return (0, s.binary_iou, -(s.fp + s.fn), name)

    return sorted(with_defect, key=key)[: max(0, int(count))]


def _data_uri(panel: np.ndarray) -> str:
    """The panel as a JPEG or PNG data URI, whichever is smaller (flat synthetic overlays: PNG)."""
    image = Image.fromarray(np.ascontiguousarray(panel))
    encoded = []
    for fmt, options in (("jpeg", {"quality": JPEG_QUALITY}), ("png", {})):
        buf = io.BytesIO()
        image.save(buf, format=fmt.upper(), **options)
        encoded.append((len(buf.getvalue()), fmt, buf.getvalue()))
    _, fmt, data = min(encoded)
    return f"data:image/{fmt};base64,{base64.b64encode(data).decode('ascii')}"


def _score_text(score: ImageScore | None) -> str:
    if score is None:
        return DASH
    text = _num(score.binary_iou)
    return text + " (no prediction)" if score.missing_prediction else text


def _figure(panel: np.ndarray, caption: str) -> str:
    """A panel, downscaled to :data:`PANEL_HEIGHT` to keep the page small (CSS scales small ones up)."""
    if panel.shape[0] > PANEL_HEIGHT:
        panel = to_height(panel, PANEL_HEIGHT)
    h, w = panel.shape[:2]
    return (
        f'<figure><img src="{_data_uri(panel)}" alt="{_esc(caption)}" width="{w}" height="{h}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _gallery_row(
    rank: int,
    record: ImageRecord,
    gt: AnnotationSet,
    methods: Sequence[ReportMethod],
    by_method: Mapping[str, dict[str, ImageScore]],
    preds: Mapping[str, dict[str, ImageRecord]],
) -> str:
    scores = [by_method[m.name].get(record.file_name) for m in methods]
    caption = f"{rank}. {record.file_name} — binary IoU: " + " · ".join(
        f"{m.name} {_score_text(s)}" for m, s in zip(methods, scores, strict=True)
    )
    shown = [(m, s) for m, s in zip(methods, scores, strict=True) if m.name in preds]
    panels = overlay_panels(gt, record, [preds[m.name].get(record.file_name) for m, _ in shown])
    captions = ["image", "ground truth", *(f"{m.name} (IoU {_score_text(s)})" for m, s in shown)]
    figures = "".join(_figure(p, c) for p, c in zip(panels, captions, strict=True))
    return (
        f'<div class="gallery-row" data-file="{_esc(record.file_name)}">'
        f'<div class="caption">{_esc(caption)}</div><div class="panels">{figures}</div></div>'
    )


def _legend(gt: AnnotationSet) -> str:
    def swatch(colour: tuple[int, int, int], text: str) -> str:
        r, g, b = colour
        return f'<span class="sw" style="background:rgb({r},{g},{b})"></span>{_esc(text)}'

    classes = "".join(
        swatch(class_colour(i), n) for i, n in zip(gt.class_map.ids, gt.class_map.names, strict=True)
    )
    outcomes = "".join(swatch(colour, _OUTCOME_TEXT.get(name, name)) for name, colour in OUTCOMES)
    return (
        f'<div class="legend"><b>ground truth:</b>{classes}</div>'
        f'<div class="legend"><b>prediction:</b>{outcomes}</div>'
    )


def _gallery_section(
    gt: AnnotationSet, methods: Sequence[ReportMethod], focus: ReportMethod, count: int, best: bool = False
) -> str:
    names = _gallery_files(methods, focus, count, best)
    gt_by_name = gt.by_file_name()
    by_method = {m.name: {s.file_name: s for s in m.result.per_image} for m in methods}
    preds = {m.name: m.pred.by_file_name() for m in methods if m.pred is not None}
    rows = [
        _gallery_row(rank, gt_by_name[name], gt, methods, by_method, preds)
        for rank, name in enumerate((n for n in names if n in gt_by_name), start=1)
    ]
    hidden = [m.name for m in methods if m.pred is None]
    intro = (
        f"The {len(rows)} defect images where <b>{_esc(focus.name)}</b> has its highest per-image binary "
        "IoU, best first: what works, beside what does not."
        if best
        else f"The {len(rows)} images where <b>{_esc(focus.name)}</b> has its lowest per-image binary IoU "
        "(images with a defect in the ground truth or any prediction), worst first."
    )
    if hidden:
        intro += " No masks to draw for: " + _esc(", ".join(hidden)) + "."
    if not rows:
        intro = (
            "No gallery was asked for."
            if count <= 0
            else "No scored image has a defect in the ground truth or in any prediction."
        )
    section, heading = ("gallery-best", "Best cases") if best else ("gallery", "Worst cases")
    return (
        f'<section id="{section}"><h2>{heading}</h2><p class="note">{intro}</p>{_legend(gt)}\n'
        + "\n".join(rows)
        + "</section>"
    )


# ----------------------------------------------------------------------------------------------------
# config


def _plain(value: Any) -> Any:
    """``value`` with only YAML-safe types (paths, tuples, numpy scalars and dataclasses converted)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _config_section(config: Mapping[str, Any] | str | None) -> str:
    if config is None:
        return ""
    if isinstance(config, str):
        text = config
    else:
        text = yaml.safe_dump(_plain(config), sort_keys=False, allow_unicode=True, default_flow_style=False)
    return f'<section id="config"><h2>Configuration</h2><pre>{_esc(text.rstrip())}</pre></section>'
