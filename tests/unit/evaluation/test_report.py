"""``report.html``: content, gallery order, escaping, self-containment, and a headless Chromium render."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from weakseg.annotations import masks as mask_ops
from weakseg.annotations.schema import ORIGIN_GT_MASK, AnnotationSet, ClassMap, ImageRecord, Instance
from weakseg.evaluation import evaluate_annotations
from weakseg.evaluation.drawing import FN_COLOUR, FP_COLOUR, TP_COLOUR
from weakseg.evaluation.report import PANEL_HEIGHT, ReportMethod, write_report

H, W = 240, 160  # taller than PANEL_HEIGHT: the gallery must downscale
CLASSES = ClassMap(("scratch", "dent"))
SHIFTS = (0, 1, 2, 3, 4, 5)  # img_i: the student's mask is shifted right by 10 * i px
EVIL = "<b>x</b>"


def _rect(top: int, left: int, height: int = 160, width: int = 60) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[top : top + height, left : left + width] = True
    return m


def _inst(class_id: int, mask: np.ndarray) -> Instance:
    box = mask_ops.box_of(mask)
    assert box is not None
    return Instance(class_id, box, mask_ops.encode(mask), origin=ORIGIN_GT_MASK)


def _sets(root: Path) -> tuple[AnnotationSet, AnnotationSet]:
    """GT: img_0..img_5 with one rectangle (student IoU (6 - i) / (6 + i)), img_6 clean, img_7 clean
    but with a student false positive. Images are flat gray so the outcome colours stand out."""
    gt_records, student = [], []
    for i in SHIFTS:
        name = f"img_{i}.png"
        cls = 1 + i % 2
        gt_records.append(ImageRecord(name, W, H, [_inst(cls, _rect(40, 40))]))
        student.append(ImageRecord(name, W, H, [_inst(cls, _rect(40, 40 + 10 * i))]))
    gt_records += [ImageRecord("img_6.png", W, H), ImageRecord("img_7.png", W, H)]
    student += [
        ImageRecord("img_6.png", W, H),
        ImageRecord("img_7.png", W, H, [_inst(1, _rect(0, 0, 30, 30))]),
    ]
    for rec in gt_records:
        Image.fromarray(np.full((H, W, 3), 90, dtype=np.uint8)).save(root / rec.file_name)
    return AnnotationSet(root, CLASSES, gt_records), AnnotationSet(root, CLASSES, student)


@pytest.fixture
def report(tmp_path: Path) -> tuple[Path, AnnotationSet, list[ReportMethod]]:
    root = tmp_path / "data"
    root.mkdir()
    gt, student = _sets(root)
    methods = [
        ReportMethod("teacher: box", evaluate_annotations(gt, gt), gt, group="refine (boxes given)"),
        ReportMethod(EVIL, evaluate_annotations(student, gt), None),
        ReportMethod("student", evaluate_annotations(student, gt), student, group="detect (no boxes)"),
    ]
    metrics_csv = tmp_path / "metrics.csv"  # Lightning's layout: epochs from 0, train and val rows apart
    metrics_csv.write_text(
        "epoch,step,train_loss,val_anomaly_miou,val_binary_iou\n"
        "0,3,,0.20,0.30\n0,3,1.50,,\n1,7,,0.35,0.45\n1,7,1.10,,\n2,11,,0.40,0.52\n2,11,0.90,,\n"
    )
    path = write_report(
        tmp_path / "out" / "report.html",
        title="synthetic <check>",
        gt=gt,
        methods=methods,
        config={"teacher": "box", "size": (518, 518), "root": root, "url": "<i>"},
        notes=["protocol note & more"],
        extra_tables=[
            ("timings", ["method", "seconds"], [["student", 1.23456], ["teacher: box", None]]),
            ("gain", ["metric", "gain"], [["binary_iou", -0.25], ["recall", 0.1]]),
        ],
        gallery=4,
        curves=metrics_csv,
        decision="defect where 1 − p(background) ≥ 0.50, one class per connected region",
    )
    return path, gt, methods


def _rows(text: str, section: str = "gallery") -> list[str]:
    """The gallery rows of one section: the worst cases (``gallery``) or the best (``gallery-best``)."""
    found = re.search(rf'<section id="{section}">.*?</section>', text, re.S)
    assert found is not None, section
    return re.findall(r'<div class="gallery-row" data-file="([^"]+)">', found.group(0))


def test_report_content(report: tuple[Path, AnnotationSet, list[ReportMethod]]) -> None:
    path, _, methods = report
    assert path.is_file() and path.name == "report.html"
    text = path.read_text(encoding="utf-8")
    table = re.search(r'<table id="metrics".*?</table>', text, re.S)
    assert table is not None
    for needle in (
        "teacher: box",
        "student",
        "&lt;b&gt;x&lt;/b&gt;",
        "scratch",
        "dent",
        "refine (boxes given)",
    ):
        assert needle in table.group(0), needle
    assert table.group(0).count("<tr>") == 2 + len(methods)  # two header rows
    assert '<td class="num best">1.000</td>' in table.group(0)  # the teacher, perfect here
    student_iou = methods[2].result.metrics["binary_iou"]
    assert f"{student_iou:.3f}" in table.group(0)
    # bars: one per (class, method), then recall and precision per method
    assert text.count('class="fill-iou"') == 2 * len(methods)
    assert text.count('class="fill-recall"') == text.count('class="fill-precision"') == len(methods)
    assert 'id="per-class"' in text and 'id="recall-precision"' in text
    # notes, extra table, config, escaped everywhere
    assert "protocol note &amp; more" in text
    assert "<caption>timings</caption>" in text and "1.235" in text and "–" in text
    config = re.search(r'<section id="config">.*?<pre>(.*?)</pre>', text, re.S)
    assert config is not None and "teacher: box" in config.group(1) and "&lt;i&gt;" in config.group(1)
    assert "<b>x</b>" not in text and "<check>" not in text and "<i>" not in text


def test_report_views(report: tuple[Path, AnnotationSet, list[ReportMethod]]) -> None:
    """Issue 11's parts: curves, decision, image level, confusion, best cases, sortable table, glossary."""
    text = report[0].read_text(encoding="utf-8")
    curves = re.search(r'<section id="curves">.*?</section>', text, re.S)
    assert curves is not None and curves.group(0).count("<svg") == 2
    ticks = re.findall(r'text-anchor="middle">(\d+)</text>', curves.group(0))
    assert {"1", "2", "3"} <= set(ticks) and "0" not in ticks  # epochs from 1
    assert 'id="decision">Decision: defect where 1 − p(background) ≥ 0.50' in text
    level = re.search(r'<table class="data" id="image-level-table">.*?</table>', text, re.S)
    assert level is not None
    student_row = re.search(r"<tr><th>student</th>(.*?)</tr>", level.group(0))
    assert student_row is not None  # 6 defect images all caught; img_7's false positive of 2 clean
    assert "6/6 (100 %)" in student_row.group(1) and "1/2 (50 %)" in student_row.group(1)
    confusion = re.search(r'<section id="confusion">.*?</section>', text, re.S)
    assert confusion is not None and "true \\ predicted" in confusion.group(0)
    assert _rows(text, "gallery-best")[0] == "img_0.png"  # the student's perfect image
    table = re.search(r'<table class="data sortable" id="per-image-table">.*?</table>', text, re.S)
    assert table is not None and table.group(0).count("<tr>") == 1 + 8
    assert '<td class="num neg">−0.250</td>' in text and '<td class="num">0.100</td>' in text
    assert 'id="glossary"' in text and "anomaly mIoU" in text


def test_gallery_worst_first(report: tuple[Path, AnnotationSet, list[ReportMethod]]) -> None:
    text = report[0].read_text(encoding="utf-8")
    # student IoU: img_7 0 (FP only), then (6 - i) / (6 + i) falling with i; img_6 has no defect anywhere
    assert _rows(text) == ["img_7.png", "img_5.png", "img_4.png", "img_3.png"]
    # per row: the image, the ground truth, and the two methods that have masks (EVIL has none)
    gallery = text[text.index('<section id="gallery">') : text.index('<section id="gallery-best">')]
    assert gallery.count("<img ") == 4 * 4
    heights = [int(h) for h in re.findall(r'<img [^>]*height="(\d+)"', gallery)]
    assert heights and max(heights) == min(PANEL_HEIGHT, 240)  # the fixture's images are 240 tall
    assert "0.333" in gallery and "no masks to draw" in gallery.lower()


def test_focus_puts_undefined_iou_last(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    gt, student = _sets(root)
    methods = [
        ReportMethod("teacher", evaluate_annotations(gt, gt), gt),
        ReportMethod("student", evaluate_annotations(student, gt), student),
    ]
    path = write_report(tmp_path / "r.html", title="t", gt=gt, methods=methods, focus="teacher", gallery=20)
    # teacher: IoU 1 everywhere except img_7 (no defect in GT nor teacher: None, shown for the student's FP)
    assert _rows(path.read_text()) == [f"img_{i}.png" for i in SHIFTS] + ["img_7.png"]


def test_report_is_self_contained(report: tuple[Path, AnnotationSet, list[ReportMethod]]) -> None:
    text = report[0].read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and "@import" not in text and "fetch(" not in text
    # one inline script (sorting the per-image table), loading nothing
    assert re.findall(r"<script[^>]*>", text) == ["<script>"]
    refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', text)
    assert refs and all(r.startswith("data:image/") for r in refs)
    for ref in refs:  # every embedded image decodes
        data = base64.b64decode(ref.split(",", 1)[1])
        with Image.open(io.BytesIO(data)) as img:
            assert img.height <= PANEL_HEIGHT


def test_bad_calls_are_clear_errors(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    gt, student = _sets(root)
    result = evaluate_annotations(student, gt)
    with pytest.raises(ValueError, match="at least one"):
        write_report(tmp_path / "r.html", title="t", gt=gt, methods=[])
    with pytest.raises(ValueError, match="nope"):
        write_report(
            tmp_path / "r.html", title="t", gt=gt, methods=[ReportMethod("a", result, None)], focus="nope"
        )
    other = ClassMap(("dent", "scratch"))
    swapped = evaluate_annotations(AnnotationSet(root, other, []), AnnotationSet(root, other, gt.images))
    with pytest.raises(ValueError, match="classes"):
        write_report(
            tmp_path / "r.html",
            title="t",
            gt=gt,
            methods=[ReportMethod("a", result, None), ReportMethod("b", swapped, None)],
        )
    assert not (tmp_path / "r.html").exists()


# ----------------------------------------------------------------------------------------------------
# headless Chromium


def _browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        hint = "no Chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI", "").lower() == "true":  # CI installs it: a missing browser is a broken CI
            pytest.fail(hint)
        pytest.skip(hint)
    return found


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _near(pixels: np.ndarray, colour: tuple[int, int, int], base: int = 90, tol: int = 40) -> int:
    """Pixels close to ``colour`` itself (legend swatch) or to its overlay blend on the gray images."""
    blend = 0.45 * base + 0.55 * np.array(colour)
    counts = 0
    for target in (np.array(colour), blend):
        counts += int((np.abs(pixels.astype(int) - target).max(axis=-1) <= tol).sum())
    return counts


def test_report_renders_in_headless_chromium(
    report: tuple[Path, AnnotationSet, list[ReportMethod]], tmp_path: Path
) -> None:
    browser = _browser()
    path = report[0].resolve()
    url = path.as_uri()

    dom = _chromium(browser, tmp_path / "profile-dom", "--dump-dom", url).stdout
    assert 'id="metrics"' in dom
    for name in ("teacher: box", "student", "&lt;b&gt;x&lt;/b&gt;"):
        assert name in dom, name
    assert dom.count("<img") >= 4 * 4
    for part in (
        "gallery",
        "gallery-best",
        "curves",
        "image-level",
        "confusion",
        "per-image-table",
        "glossary",
    ):
        assert f'id="{part}"' in dom, part
    assert dom.count("<svg") >= 4 and "<polyline" in dom

    shot = tmp_path / "shot.png"
    _chromium(browser, tmp_path / "profile-shot", "--window-size=1280,5000", f"--screenshot={shot}", url)
    assert shot.is_file()
    with Image.open(shot) as img:
        assert img.size == (1280, 5000)  # tall enough to reach the galleries
        pixels = np.asarray(img.convert("RGB"))
    assert pixels.std() > 10
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    for colour in (TP_COLOUR, FP_COLOUR, FN_COLOUR):  # legend swatches at least, gallery blends too
        assert _near(pixels, colour) > 100, colour
