"""The student on Magnetic Tile: teacher masks vs refined masks vs box-free students, on held-out images.

One fixed seeded split (train / val / test) of the whole dataset, boxes derived from the human masks.

1. Teachers label every box (``--teachers``); the one with the best binary IoU on the train+val
   defect images (never the test images) is "the teacher" the students learn from.
2. Three students are trained through the real CLI (``weakseg train``, one process each, so its wall
   time and peak memory are its own), sharing one feature cache:
   ``student`` (the teacher's masks, self-correction on), ``no-self-correction`` (``loss.tau=null``)
   and ``supervised`` (the human masks: the ceiling). A short run without the feature cache gives
   seconds per epoch for the online backbone, beside the cached epochs of ``student``.
3. On the test images: every teacher's masks and the refined masks (``weakseg refine``: the student
   inside the same boxes) are scored in **refine** mode; the three students predict without boxes in
   **detect** mode. Binary IoU / recall / precision, anomaly mIoU and per-class IoU come from one
   dataset-level confusion matrix at the original resolution (METHODS.md 1.6).

    python benchmarks/student.py [--out bench/student] [--teachers box,contrast,fusion]
        [--epochs 20] [--size 256] [--seed 0] [--set key=value ...]

Resumable: finished stores and runs are reused; the evaluation is recomputed. Writes ``results.json``
and ``table.md`` in ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from weakseg.annotations.readers import load_annotations
from weakseg.annotations.schema import AnnotationSet
from weakseg.annotations.splits import apply_splits, splits_for
from weakseg.data.shared import shared_dataset
from weakseg.evaluation import evaluate_annotations
from weakseg.evaluation.audit import EvaluationResult
from weakseg.inference.evaluate_run import predict_set
from weakseg.inference.predictor import Predictor
from weakseg.inference.refine import refine
from weakseg.pseudolabel.runner import pseudo_label
from weakseg.utils.atomic import atomic_write_json, atomic_write_text

# Runs the CLI in this interpreter and records the process's peak resident memory on the way out.
_MEASURED_CLI = """
import resource, sys, json
args, report = sys.argv[2:], sys.argv[1]
sys.argv = ["weakseg", *args]
try:
    from weakseg.cli.app import main
    main()
finally:
    with open(report, "w") as fh:
        json.dump({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, fh)
"""


def scores(result: EvaluationResult) -> dict[str, Any]:
    m = result.metrics
    return {
        "binary_iou": m["binary_iou"],
        "binary_recall": m["binary_recall"],
        "binary_precision": m["binary_precision"],
        "anomaly_miou": m["anomaly_miou"],
        "per_class_iou": {c: v["iou"] for c, v in m["per_class"].items() if c != "background"},
    }


def label(data: Path, gt: AnnotationSet, teacher: str, out: Path) -> tuple[AnnotationSet, float]:
    """The teacher's merged store (made once) and its images per second (0 when reused)."""
    store = out / f"pseudo-{teacher}"
    seconds = 0.0
    if not (store / "pseudo.json").is_file():
        start = time.perf_counter()
        pseudo_label(data, teacher, store)
        seconds = time.perf_counter() - start
    masks = load_annotations(store / "pseudo.json", "coco")
    return masks, (len(masks.images) / seconds if seconds else 0.0)


def train_run(name: str, data: Path, pseudo: Path, out: Path, common: list[str], extra: list[str]) -> dict:
    """``weakseg train`` in its own process; returns wall seconds, peak memory and epoch timings."""
    run = out / name
    report = out / f"{name}.measure.json"
    if not (run / "weights" / "last.ckpt").is_file():
        run.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "splits.json", run / "splits.json")  # every run on the same split
        args = ["train", str(data), "--pseudo", str(pseudo), "--out", str(run), *common, *extra]
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _MEASURED_CLI, str(report), *args], check=False)
        if done.returncode != 0:
            sys.exit(f"training {name} failed (exit {done.returncode})")
        measure = json.loads(report.read_text())
        measure["wall_seconds"] = time.perf_counter() - start
        atomic_write_json(report, measure)
    measure = json.loads(report.read_text())
    epoch_seconds = []
    with open(run / "metrics.csv") as fh:
        for row in csv.DictReader(fh):
            if row.get("epoch_seconds"):
                epoch_seconds.append(float(row["epoch_seconds"]))
    measure["epochs"] = len(epoch_seconds)
    measure["median_epoch_seconds"] = statistics.median(epoch_seconds) if epoch_seconds else None
    measure["run"] = str(run)
    return measure


def row(name: str, mode: str, result: EvaluationResult, **extra: Any) -> dict[str, Any]:
    return {"method": name, "mode": mode, **scores(result), **extra}


def fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def table(rows: list[dict[str, Any]], classes: list[str]) -> str:
    head = ["method", "mode", "binary IoU", "recall", "precision", "anomaly mIoU", *classes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"], r["mode"], r["binary_iou"], r["binary_recall"], r["binary_precision"]]
        cells += [r["anomaly_miou"], *(r["per_class_iou"].get(c) for c in classes)]
        lines.append("| " + " | ".join(fmt(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="default: the shared Magnetic Tile set")
    parser.add_argument("--out", type=Path, default=Path("bench/student"))
    parser.add_argument("--teachers", default="box,contrast,fusion")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-cache-epochs", type=int, default=2, help="epochs of the timing-only run")
    parser.add_argument("--set", nargs="*", default=[], help="key=value settings for every student")
    args = parser.parse_args()

    data = args.data or shared_dataset("magnetic_tile")
    if data is None:
        sys.exit("Magnetic Tile not found: pass --data or put it under ../shared/data")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    gt = load_annotations(data)
    apply_splits(gt, splits_for(gt, out / "splits.json", seed=args.seed))
    test = gt.subset("test")
    fit_names = {r.file_name for r in gt.images if r.split in ("train", "val") and r.instances}
    test_names = {r.file_name for r in test.images}
    classes = list(gt.class_map.names)
    n_defect = sum(bool(r.instances) for r in test)
    print(f"{data}: {len(gt.images)} images; test {len(test.images)} ({n_defect} with defects)")

    # 1. Teachers, chosen on train+val, reported on test.
    rows: list[dict[str, Any]] = []
    chosen, best_iou, teacher_rows = None, -1.0, {}
    for teacher in args.teachers.split(","):
        masks, speed = label(data, gt, teacher, out)
        fit = evaluate_annotations(masks.with_files(fit_names), gt.with_files(fit_names), worst=0)
        fit_iou = fit.metrics["binary_iou"]
        result = evaluate_annotations(masks.with_files(test_names), test, worst=0)
        teacher_rows[teacher] = row(
            f"teacher: {teacher}", "refine (boxes)", result, fit_binary_iou=fit_iou, images_per_s=speed
        )
        test_iou = result.metrics["binary_iou"]
        print(f"teacher {teacher}: train+val binary IoU {fit_iou:.3f}, test {test_iou:.3f}")
        if fit_iou > best_iou:
            chosen, best_iou = teacher, fit_iou
    assert chosen is not None
    print(f"the teacher: {chosen}")
    rows += [teacher_rows[t] for t in teacher_rows]

    # 2. Students (own processes), one shared feature cache.
    common = ["--epochs", str(args.epochs), "--size", str(args.size), "--seed", str(args.seed)]
    common += ["--cache-dir", str(out / "cache"), *args.set]
    store = out / f"pseudo-{chosen}"
    runs = {
        "student": train_run("student", data, store, out, common, []),
        "no-self-correction": train_run("no-self-correction", data, store, out, common, ["loss.tau=null"]),
        "supervised": train_run("supervised", data, data, out, common, []),
    }
    timing = ["--epochs", str(args.no_cache_epochs), "--size", str(args.size), "--seed", str(args.seed)]
    online = train_run("no-feature-cache", data, store, out, timing, [*args.set, "feature_cache=false"])

    # 3. Refine (boxes given) and detect (no boxes) on the test images.
    boxes = AnnotationSet(test.root, test.class_map, [r for r in test.images if r.instances], test.format)
    variants = {
        "student": ("student", None),
        "student + teacher (quality fusion)": ("student", store),
        "supervised": ("supervised", None),
    }
    for label_, (name, teacher_store) in variants.items():
        refined = out / f"refined-{label_.split()[0]}{'-fused' if teacher_store else ''}"
        if not (refined / "pseudo.json").is_file():
            refine(out / name, boxes, refined, pseudo=teacher_store)
        result = evaluate_annotations(load_annotations(refined / "pseudo.json", "coco"), test, worst=0)
        rows.append(row(f"refined: {label_}", "refine (boxes)", result))
    for name, measure in runs.items():
        pred = predict_set(Predictor(out / name), test)
        result = evaluate_annotations(pred, test, worst=0)
        rows.append(row(f"{name} student", "detect (no boxes)", result, **measure))

    by = {r["method"]: r for r in rows}
    teacher_iou = by[f"teacher: {chosen}"]["binary_iou"]
    refined_iou = by["refined: student"]["binary_iou"]
    free, full = by["student student"], by["supervised student"]
    cached, uncached = runs["student"]["median_epoch_seconds"], online["median_epoch_seconds"]
    targets = {
        "refined_minus_teacher_binary_iou": refined_iou - teacher_iou,
        "box_free_over_supervised_binary_iou": free["binary_iou"] / full["binary_iou"]
        if full["binary_iou"]
        else None,
        "self_correction_recall_gain": free["binary_recall"]
        - by["no-self-correction student"]["binary_recall"],
        "feature_cache_speedup": uncached / cached if cached and uncached else None,
        "student_run_minutes": runs["student"]["wall_seconds"] / 60,
    }
    results = {
        "data": str(data),
        "seed": args.seed,
        "teacher": chosen,
        "settings": {"epochs": args.epochs, "size": args.size, "set": args.set},
        "rows": rows,
        "timing": {"cached_epoch_s": cached, "online_epoch_s": uncached, "runs": runs, "online": online},
        "targets": targets,
        "wall_minutes": (time.perf_counter() - started) / 60,
    }
    atomic_write_json(out / "results.json", results)
    text = table(rows, classes)
    text += "\n\n| run | epochs | median s/epoch | wall minutes | peak memory MB |\n|---|---|---|---|---|\n"
    for name, m in {**runs, "no-feature-cache": online}.items():
        cells = [name, m["epochs"], m["median_epoch_seconds"], m["wall_seconds"] / 60, m["peak_rss_mb"]]
        text += "| " + " | ".join(fmt(c) for c in cells) + " |\n"
    text += "\n" + "\n".join(f"- {k}: {fmt(v)}" for k, v in targets.items())
    atomic_write_text(out / "table.md", text + "\n")
    print(text)


if __name__ == "__main__":
    main()
