"""``weakseg benchmark DATA --out DIR``: teachers, refined masks and students on one held-out test set.

The folder ``DIR`` holds every expensive product, each written atomically once finished, so an
interrupted benchmark resumes where it stopped and finished rows are never recomputed:

* ``splits.json``: the seeded class-stratified split every row shares;
* ``teachers/<name>/``: pseudo-label stores (resumable themselves) and ``<name>.done.json`` timings;
* ``runs/<key>/``: training runs (resumed from ``last.ckpt`` when cut off), ``<key>.done.json`` timings
  and peak memory from the run's own process (:mod:`weakseg.benchmark.child`);
* ``refined/<key>/``: stores of a run refining the test boxes;
* ``predictions/<key>.json``: a run's masks for the test images (COCO RLE) and its prediction speed.

Scoring is recomputed from those files on every call (it is cheap and deterministic), then written
as ``results.json``, ``results.csv``, ``table.md`` and ``report.html``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from weakseg.annotations.readers import load_annotations
from weakseg.annotations.schema import AnnotationSet
from weakseg.annotations.splits import apply_splits, splits_for
from weakseg.annotations.writers.coco import coco_dict
from weakseg.benchmark.plan import (
    DEFAULT_SETTINGS,
    GROUP_BOXES,
    GROUP_FREE,
    LABELS,
    REFINES,
    RUNS,
    BenchmarkSettings,
    RunSpec,
)
from weakseg.errors import DataError, WeaksegError
from weakseg.evaluation.audit import EvaluationResult, evaluate_annotations
from weakseg.student.unet import require_smp
from weakseg.training.config import load_config
from weakseg.utils.atomic import atomic_write_json, atomic_write_text

#: Rows (by key) whose masks appear in the report's gallery beside the teacher's; the rest are in the
#: tables only.
GALLERY_ROWS = ("refined-student", "student", "unet")


@dataclass
class Row:
    """One line of the table: a method's scores on the test images and what it cost."""

    method: str
    group: str
    trained_on: str
    result: EvaluationResult
    timing: dict[str, Any]
    masks: AnnotationSet

    def to_dict(self) -> dict[str, Any]:
        m = self.result.metrics
        return {
            "method": self.method,
            "group": self.group,
            "trained_on": self.trained_on,
            "binary_iou": m["binary_iou"],
            "binary_recall": m["binary_recall"],
            "binary_precision": m["binary_precision"],
            "miou": m["miou"],
            "anomaly_miou": m["anomaly_miou"],
            "anomaly_f1": m["anomaly_f1"],
            "per_class_iou": {c: v["iou"] for c, v in m["per_class"].items() if c != "background"},
            "timing": self.timing,
        }


@dataclass
class BenchmarkOutput:
    out: Path
    settings: BenchmarkSettings
    teacher: str  # the teacher the students learned from
    rows: list[Row]
    comparisons: dict[str, Any]
    files: dict[str, Path]
    wall_seconds: float


def benchmark(
    data: str | Path,
    out: str | Path,
    *,
    teachers: tuple[str, ...] = ("box", "contrast", "grabcut"),
    backbone: str = "lite0",
    seed: int = 0,
    epochs: int = 10,
    size: int = 256,
    settings: tuple[str, ...] | None = None,
    console: Console | None = None,
) -> BenchmarkOutput:
    """Run (or resume) the whole comparison on ``data`` into ``out``; see the module docstring."""
    console = console or Console(stderr=True)
    started = time.perf_counter()
    out = Path(out)
    config = BenchmarkSettings(str(Path(data).resolve()), tuple(teachers), backbone, seed, epochs, size)
    config.settings = (*DEFAULT_SETTINGS, *(settings or ()))  # later settings win
    for spec in RUNS:  # a bad setting fails here, before an hour of work, not in a training process
        if load_config(None, [*config.train_args(), *spec.overrides]).model == "unet":
            require_smp()
    _check_settings(out, config)

    gt = load_annotations(data)
    unmasked = [r.file_name for r in gt.images if any(i.mask is None for i in r.instances)]
    apply_splits(gt, splits_for(gt, out / "splits.json", seed=seed))
    test = gt.subset("test")
    fit_names = {r.file_name for r in gt.images if r.split in ("train", "val") and r.instances}
    test_names = [r.file_name for r in test.images]
    if not any(r.instances for r in test.images):
        raise DataError(data, "the test split has no defect image: nothing to benchmark")
    console.print(
        f"{data}: {len(gt.images)} images, test {len(test.images)} "
        f"({sum(bool(r.instances) for r in test.images)} with defects)"
        + (f"; {len(unmasked)} images without masks are not scored" if unmasked else "")
    )

    # 1. Teachers label every box; the best on train+val (never test) teaches the students.
    rows: list[Row] = []
    best, best_fit, fit_scores = "", -1.0, {}
    for name in config.teachers:
        masks, timing = _teacher(data, name, out / "teachers", console)
        fit = evaluate_annotations(masks.with_files(fit_names), gt.with_files(fit_names), worst=0)
        fit_scores[name] = fit.metrics["binary_iou"]
        test_masks = masks.with_files(test_names)
        result = evaluate_annotations(test_masks, test, worst=0)
        rows.append(Row(f"teacher: {name}", GROUP_BOXES, "boxes", result, timing, test_masks))
        if (fit_scores[name] or 0.0) > best_fit:
            best, best_fit = name, fit_scores[name] or 0.0
    console.print(f"the teacher (best train+val binary IoU, {best_fit:.3f}): {best}")
    teacher_store = out / "teachers" / best

    # 2. Students, each in its own process; the same split file for all.
    def trained_on(spec: RunSpec) -> str:
        return "human masks" if spec.supervised else f"teacher: {best}"

    free_rows: list[Row] = []
    for spec in RUNS:
        run, timing = _train(spec, data, teacher_store, out, config, console)
        masks, predict_timing = _predict(run, test, out / "predictions" / f"{spec.key}.json")
        result = evaluate_annotations(masks, test, worst=0)
        row = Row(spec.label, GROUP_FREE, trained_on(spec), result, {**timing, **predict_timing}, masks)
        free_rows.append(row)

    # 3. Refined masks: a trained run labels the same test boxes the teachers did.
    boxes = AnnotationSet(test.root, test.class_map, [r for r in test.images if r.instances], test.format)
    runs = {spec.key: spec for spec in RUNS}
    for spec in REFINES:
        store = out / "refined" / spec.key
        timing = _refine(
            out / "runs" / spec.run, boxes, store, teacher_store if spec.fuse_with_teacher else None
        )
        masks = load_annotations(store / "pseudo.json", "coco")
        result = evaluate_annotations(masks, test, worst=0)
        rows.append(Row(spec.label, GROUP_BOXES, trained_on(runs[spec.run]), result, timing, masks))
    rows += free_rows

    comparisons = _comparisons(rows, best)
    wall = time.perf_counter() - started
    calls = _log_call(out, wall)
    files = _write_outputs(out, config, gt, test, rows, best, fit_scores, comparisons, calls)
    return BenchmarkOutput(out, config, best, rows, comparisons, files, wall)


# ----------------------------------------------------------------------------------------------------
# settings and resumption


def _check_settings(out: Path, config: BenchmarkSettings) -> None:
    """A folder keeps the settings of its first call; resuming with other settings would mix rows."""
    path = out / "benchmark.json"
    wanted = json.loads(json.dumps(asdict(config)))
    if path.is_file():
        have = json.loads(path.read_text())
        if have != wanted:
            diff = sorted(k for k in wanted if have.get(k) != wanted[k])
            raise DataError(
                out,
                f"holds a benchmark with other settings ({', '.join(diff)} differ: "
                f"{', '.join(f'{k}={have.get(k)!r}' for k in diff)}); use a new --out or the same settings",
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, wanted, indent=2)


def _log_call(out: Path, wall: float) -> list[float]:
    """Wall seconds of every call on this folder (the first does the work; resumed ones finish it)."""
    path = out / "calls.json"
    calls = [*(json.loads(path.read_text()) if path.is_file() else []), wall]
    atomic_write_json(path, calls)
    return calls


def _done(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _teacher(data: str | Path, name: str, folder: Path, console: Console) -> tuple[AnnotationSet, dict]:
    """The teacher's store (labelled once, resumed if cut off) and its labelling speed."""
    from weakseg.pseudolabel.runner import pseudo_label

    done_path = folder / f"{name}.done.json"
    timing = _done(done_path)
    if timing is None:
        console.print(f"teacher {name}: labelling")
        start = time.perf_counter()
        result = pseudo_label(data, name, folder / name, console=console)
        seconds = time.perf_counter() - start
        images = result.processed + result.skipped
        timing = {"label_seconds": seconds, "label_images": images, "label_images_per_s": images / seconds}
        atomic_write_json(done_path, timing)
    return load_annotations(folder / name / "pseudo.json", "coco"), timing


def _train(
    spec: RunSpec,
    data: str | Path,
    teacher_store: Path,
    out: Path,
    config: BenchmarkSettings,
    console: Console,
) -> tuple[Path, dict[str, Any]]:
    """Train (or resume, or reuse) one run in a process of its own; returns it and its timings."""
    run = out / "runs" / spec.key
    done_path = out / "runs" / f"{spec.key}.done.json"
    timing = _done(done_path)
    if timing is None:
        resume = (run / "weights" / "last.ckpt").is_file()
        console.print(f"training {spec.key}" + (" (resuming)" if resume else ""))
        run.mkdir(parents=True, exist_ok=True)
        splits = run / "splits.json"
        if not splits.is_file():
            atomic_write_text(splits, (out / "splits.json").read_text())  # every run on the same split
        report = out / "runs" / f"{spec.key}.child.json"
        pseudo = data if spec.supervised else teacher_store
        args = [str(report), str(data), str(pseudo), str(run), str(out / "cache" / spec.cache)]
        args += ["resume" if resume else "fresh", *config.train_args(), *spec.overrides]
        start = time.perf_counter()
        env = {**os.environ, "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "ignore")}
        done = subprocess.run([sys.executable, "-m", "weakseg.benchmark.child", *args], env=env, check=False)
        if done.returncode != 0:
            raise WeaksegError(f"training {spec.key} failed (exit {done.returncode}); its folder: {run}")
        child = json.loads(report.read_text())
        timing = {"train_wall_seconds": time.perf_counter() - start, "peak_rss_mb": child["peak_rss_mb"]}
        timing.update(_epoch_timing(run / "metrics.csv"))
        atomic_write_json(done_path, timing)
        report.unlink()
    return run, timing


def _epoch_timing(metrics_csv: Path) -> dict[str, Any]:
    seconds = []
    with open(metrics_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("epoch_seconds"):
                seconds.append(float(row["epoch_seconds"]))
    return {"epochs": len(seconds), "median_epoch_seconds": statistics.median(seconds) if seconds else None}


def _predict(run: Path, test: AnnotationSet, path: Path) -> tuple[AnnotationSet, dict[str, Any]]:
    """The run's masks for the test images (kept as COCO RLE beside the timing of making them)."""
    timing_path = path.with_suffix(".done.json")
    timing = _done(timing_path)
    if timing is None or not path.is_file():
        from weakseg.inference.evaluate_run import predict_set
        from weakseg.inference.predictor import Predictor

        predictor = Predictor(run)
        start = time.perf_counter()
        masks = predict_set(predictor, test)
        seconds = time.perf_counter() - start
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, coco_dict(masks))
        timing = {"predict_seconds": seconds, "predict_images_per_s": len(masks.images) / seconds}
        atomic_write_json(timing_path, timing)
    masks = load_annotations(path, "coco")
    return AnnotationSet(test.root, masks.class_map, masks.images, masks.format), timing


def _refine(run: Path, boxes: AnnotationSet, store: Path, teacher_store: Path | None) -> dict[str, Any]:
    from weakseg.inference.refine import refine

    done_path = store.with_name(store.name + ".done.json")
    timing = _done(done_path)
    if timing is None:
        start = time.perf_counter()
        refine(run, boxes, store, pseudo=teacher_store)
        seconds = time.perf_counter() - start
        timing = {"label_seconds": seconds, "label_images_per_s": len(boxes.images) / seconds}
        atomic_write_json(done_path, timing)
    return timing


# ----------------------------------------------------------------------------------------------------
# comparisons and outputs


def _comparisons(rows: list[Row], teacher: str) -> dict[str, Any]:
    """The questions the benchmark answers, each a difference or ratio of two rows of this run."""
    by = {r.method: r.result.metrics for r in rows}
    times = {r.method: r.timing for r in rows}

    def diff(a: str, b: str, key: str = "binary_iou") -> float | None:
        x, y = by[a][key], by[b][key]
        return None if x is None or y is None else x - y

    refined, student, unet = LABELS["refined-student"], LABELS["student"], LABELS["unet"]
    ceiling = LABELS["supervised"]
    teachers = [r.method for r in rows if r.method.startswith("teacher: ")]
    ratio = None
    if by[ceiling]["binary_iou"] and by[student]["binary_iou"] is not None:
        ratio = by[student]["binary_iou"] / by[ceiling]["binary_iou"]
    speed = None
    if times[unet].get("predict_images_per_s") and times[student].get("predict_images_per_s"):
        speed = times[student]["predict_images_per_s"] / times[unet]["predict_images_per_s"]
    return {
        "teacher": teacher,
        "refined_minus_teacher_binary_iou": {t.removeprefix("teacher: "): diff(refined, t) for t in teachers},
        "refined_beats_every_teacher": all((diff(refined, t) or 0.0) > 0 for t in teachers),
        "student_minus_unet_binary_iou": diff(student, unet),
        "student_over_supervised_binary_iou": ratio,
        "self_correction_recall_gain": diff(student, LABELS["no-self-correction"], "binary_recall"),
        "binary_head_gain_binary_iou": diff(student, LABELS["no-binary-head"]),
        "detail_branch_gain_binary_iou": diff(student, LABELS["no-detail-branch"]),
        "student_over_unet_predict_speed": speed,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def metrics_table(rows: list[Row], classes: list[str]) -> str:
    """The comparison as Markdown (METHODS.md 1.7 columns, then recall, precision and per class)."""
    head = ["method", "mode", "trained on", "mIoU", "anomaly mIoU", "anomaly F1", "binary IoU"]
    head += ["recall", "precision", *classes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        d = row.to_dict()
        cells = [d["method"], d["group"], d["trained_on"], d["miou"], d["anomaly_miou"], d["anomaly_f1"]]
        cells += [d["binary_iou"], d["binary_recall"], d["binary_precision"]]
        cells += [d["per_class_iou"].get(c) for c in classes]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines)


TIMING_COLUMNS = (
    ("label_images_per_s", "label img/s"),
    ("epochs", "epochs"),
    ("median_epoch_seconds", "median s/epoch"),
    ("train_wall_seconds", "train wall s"),
    ("peak_rss_mb", "peak RSS MB"),
    ("predict_images_per_s", "predict img/s"),
)


def timing_rows(rows: list[Row]) -> list[list[Any]]:
    return [[r.method, *(r.timing.get(k) for k, _ in TIMING_COLUMNS)] for r in rows]


def timing_table(rows: list[Row]) -> str:
    head = ["method", *(label for _, label in TIMING_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_fmt(c) for c in cells) + " |" for cells in timing_rows(rows)]
    return "\n".join(lines)


def _csv(rows: list[Row], classes: list[str]) -> str:
    columns = ["method", "group", "trained_on", "binary_iou", "binary_recall", "binary_precision", "miou"]
    columns += ["anomaly_miou", "anomaly_f1", *(f"iou_{c}" for c in classes), *(k for k, _ in TIMING_COLUMNS)]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        d = row.to_dict()
        flat = {k: d[k] for k in columns[:9]}
        flat.update({f"iou_{c}": d["per_class_iou"].get(c) for c in classes})
        flat.update({k: row.timing.get(k) for k, _ in TIMING_COLUMNS})
        writer.writerow({k: "" if v is None else v for k, v in flat.items()})
    return text.getvalue()


def _write_outputs(
    out: Path,
    config: BenchmarkSettings,
    gt: AnnotationSet,
    test: AnnotationSet,
    rows: list[Row],
    teacher: str,
    fit_scores: dict[str, float | None],
    comparisons: dict[str, Any],
    calls: list[float],
) -> dict[str, Path]:
    from weakseg.evaluation.report import ReportMethod, write_report

    classes = list(gt.class_map.names)
    files = {k: out / f for k, f in (("json", "results.json"), ("csv", "results.csv"), ("table", "table.md"))}
    doc = {
        "settings": asdict(config),
        "images": {
            "all": len(gt.images),
            "test": len(test.images),
            "test_with_defects": sum(bool(r.instances) for r in test.images),
        },
        "teacher": teacher,
        "teacher_train_val_binary_iou": fit_scores,
        "rows": [r.to_dict() for r in rows],
        "comparisons": comparisons,
        "wall_seconds_per_call": calls,
        "wall_seconds_total": sum(calls),
    }
    atomic_write_json(files["json"], doc, indent=2)
    atomic_write_text(files["csv"], _csv(rows, classes))
    text = metrics_table(rows, classes) + "\n\n" + timing_table(rows) + "\n\n"
    text += "\n".join(f"- {k}: {_fmt(v) if not isinstance(v, dict) else v}" for k, v in comparisons.items())
    atomic_write_text(files["table"], text + "\n")

    gallery = {f"teacher: {teacher}", *(LABELS[key] for key in GALLERY_ROWS)}
    methods = [
        ReportMethod(r.method, r.result, r.masks if r.method in gallery else None, r.group) for r in rows
    ]
    notes = [
        (
            f"{len(test.images)} test images ({doc['images']['test_with_defects']} with defects) of "
            f"{len(gt.images)}; seeded split {config.seed}. Students learned from the {teacher} teacher "
            "(best binary IoU on the train+val defect images)."
        ),
        f"Wall time: {sum(calls) / 60:.1f} min over {len(calls)} call(s) (finished rows are reused).",
    ]
    timing_head = ["method", *(label for _, label in TIMING_COLUMNS)]
    files["report"] = write_report(
        out / "report.html",
        title=f"weakseg benchmark: {Path(config.data).name}",
        gt=test,
        methods=methods,
        focus=LABELS["student"],
        config=yaml.safe_load(yaml.safe_dump(asdict(config))),
        notes=notes,
        extra_tables=[("Timings", timing_head, timing_rows(rows))],
    )
    return files
