"""Evaluate a trained model (a run's student, or its ONNX export): its predictions and its teacher's
masks on the same images.

Both go through :func:`weakseg.evaluation.scoring.evaluate_annotations` (original resolution unless
``eval_size``), so the two rows are directly comparable and the report shows the student's gain.

Which images: ``split="all"`` scores every image of ``data``; ``"train"``, ``"val"`` or ``"test"`` the
images of that split in the run's ``splits.json`` (``data`` must then be the training dataset). The
default (``None``) is the test split when ``data`` is the training dataset, and every image otherwise.

The teacher is the pseudo-label store (or mask dataset) the run was trained on, read from
``run.json`` (``"pseudo"``), or given explicitly; without one the teacher row is skipped with a note.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml

from weakseg.annotations.images import read_image
from weakseg.annotations.readers import ReadOptions, load_annotations
from weakseg.annotations.schema import AnnotationSet, ImageRecord
from weakseg.annotations.splits import SPLITS, apply_splits, load_splits
from weakseg.errors import DataError, IssueLog
from weakseg.evaluation.files import write_evaluation
from weakseg.evaluation.output import EvaluateOutput
from weakseg.evaluation.report import ReportMethod, write_report
from weakseg.evaluation.scoring import EvaluationResult, evaluate_annotations
from weakseg.inference.predictor import BatchPredictor, prediction_record
from weakseg.inference.run import RunInfo
from weakseg.pseudolabel.store import PseudoStore, load_pseudo
from weakseg.utils.atomic import atomic_write_json

#: Metrics whose student - teacher difference is reported as the gain.
GAIN_METRICS = ("anomaly_miou", "binary_iou", "binary_recall", "binary_precision", "miou")
SPLIT_CHOICES = (*SPLITS, "all")


def select_images(
    gt: AnnotationSet, run: RunInfo, split: str | None, data: str | Path
) -> tuple[AnnotationSet, str]:
    """The images of ``gt`` to score and the name of that selection (see the module docstring)."""
    if split is not None and split not in SPLIT_CHOICES:
        raise DataError(None, f"unknown split {split!r}; choose one of {', '.join(SPLIT_CHOICES)}")
    if split == "all":
        return gt, "all"
    splits = load_splits(run.splits_path) if run.splits_path.is_file() else None
    covered = splits is not None and all(r.file_name in splits for r in gt.images)
    if split is None and not covered:
        return gt, "all"
    if not covered:
        raise DataError(
            data,
            f"--split {split}: these images are not the run's training dataset (not all in "
            f"{run.splits_path}); use --split all",
        )
    assert splits is not None
    chosen = split or "test"
    apply_splits(gt, splits, strict=True, source=run.splits_path)
    subset = gt.subset(chosen)
    if not subset.images:
        raise DataError(run.splits_path, f"the {chosen} split has no images; use --split all")
    return subset, chosen


def predict_set(predictor: BatchPredictor, ann: AnnotationSet, *, min_area: int = 0) -> AnnotationSet:
    """The student's predictions for every scoreable image of ``ann`` as an annotation set."""
    wanted = [r for r in ann.images if r.annotated and all(i.mask is not None for i in r.instances)]

    def items() -> Iterator[tuple[ImageRecord, np.ndarray]]:
        for record in wanted:
            yield record, read_image(ann.image_path(record))

    records = []
    for record, _, prob in predictor.iter_probabilities(items()):
        pred, _ = prediction_record(
            record.file_name, prob, min_area=min_area, threshold=predictor.threshold, vote=predictor.vote
        )
        records.append(pred)
    return AnnotationSet(ann.root, predictor.class_map, records, format="predictions")


def load_teacher(path: str | Path) -> tuple[AnnotationSet, str, str]:
    """A pseudo-label store's merged masks (or a mask dataset), its report name and its group.

    A store's teacher refined the boxes; a mask dataset is what the run was trained on.
    """
    path = Path(path)
    store = PseudoStore(path)
    if store.exists():
        return load_pseudo(path), f"teacher: {store.meta().get('teacher')}", "refine (boxes given)"
    return load_pseudo(path), f"masks of {path.name}", "training masks"


def gain(student: EvaluationResult, teacher: EvaluationResult | None) -> dict[str, float | None] | None:
    """Student minus teacher for :data:`GAIN_METRICS` (``None`` where either is undefined)."""
    if teacher is None:
        return None
    out: dict[str, float | None] = {}
    for key in GAIN_METRICS:
        s, t = student.metrics.get(key), teacher.metrics.get(key)
        out[key] = None if s is None or t is None else float(s) - float(t)
    return out


def evaluate_predictor(
    predictor: BatchPredictor,
    info: RunInfo | None,
    data: str | Path,
    *,
    name: str,
    out: str | Path,
    split: str | None = None,
    teacher: str | Path | None = None,
    format: str = "auto",
    options: ReadOptions | None = None,
    worst: int = 12,
    eval_size: int | None = None,
) -> EvaluateOutput:
    """Score a model (and its teacher) on ``data``; reports go to ``out``.

    ``info`` is the model's run (its splits choose the images, its training masks are the teacher);
    without it (an ONNX file whose run is gone) every image is scored and only an explicit
    ``teacher`` is. ``comparison.json`` in ``out`` (and the output's ``comparison``) holds both rows
    and the gain; ``report.html`` shows both on one page, the gallery ordered by the model's worst images.
    """
    issues = IssueLog()
    gt_all = load_annotations(data, format, options, issues)
    issues.raise_errors()
    if info is not None:
        gt, chosen = select_images(gt_all, info, split, data)
    elif split not in (None, "all"):
        raise DataError(None, f"--split {split}: the model's run folder is not available; use --split all")
    else:
        gt, chosen = gt_all, "all"
    pred = predict_set(predictor, gt)
    student = evaluate_annotations(pred, gt, worst=worst, eval_size=eval_size)
    out_dir = Path(out)
    title = f"student {name} vs {Path(data).name} [{chosen}]"
    files = write_evaluation(student, out_dir, gt=gt, pred=pred, title=title)

    teacher_result: EvaluationResult | None = None
    teacher_method: ReportMethod | None = None
    note: str | None = None
    teacher_path = Path(teacher) if teacher is not None else (info.pseudo_path() if info else None)
    if teacher_path is None:
        note = (
            "teacher skipped: the run does not record its training masks (run.json 'pseudo'); pass --teacher"
        )
    elif not teacher_path.exists():
        note = f"teacher skipped: {teacher_path} does not exist"
    else:
        teacher_ann, label, group = load_teacher(teacher_path)
        teacher_set = teacher_ann.with_files(r.file_name for r in gt.images)
        teacher_result = evaluate_annotations(teacher_set, gt, worst=worst, eval_size=eval_size)
        t_title = f"{label} vs {Path(data).name} [{chosen}]"
        t_files = write_evaluation(
            teacher_result, out_dir / "teacher", gt=gt, pred=teacher_set, title=t_title
        )
        files.update({f"teacher_{k}": v for k, v in t_files.items()})
        teacher_method = ReportMethod(label, teacher_result, teacher_set, group)
    doc = {
        "run": str(info.path.resolve()) if info is not None else None,
        "predictor": predictor.describe(),
        "split": chosen,
        "student": student.to_dict(),
        "teacher": teacher_result.to_dict() if teacher_result is not None else None,
        "teacher_source": str(teacher_path) if teacher_result is not None else None,
        "teacher_note": note,
        "gain": gain(student, teacher_result),
    }
    files["comparison"] = out_dir / "comparison.json"
    atomic_write_json(files["comparison"], doc, indent=2)
    student_method = ReportMethod("student", student, pred, "detect (no boxes)")
    notes = [f"Model: {name}; split: {chosen}; data: {Path(data).resolve()}"]
    selection = _selection_note(info)
    if selection:
        notes.append(selection)
    files["report"] = write_report(
        out_dir / "report.html",
        title=title,
        gt=gt,
        methods=[m for m in (teacher_method, student_method) if m is not None],
        config=_run_config(info) if info is not None else None,
        notes=notes if note is None else [*notes, note],
        extra_tables=_gain_table(doc["gain"]),
        gallery=worst,
        curves=info.path / "metrics.csv" if info is not None else None,
        decision=decision_text(predictor, info),
    )
    return EvaluateOutput(
        student, files, title, kind="model", teacher=teacher_result, teacher_note=note, comparison=doc
    )


def decision_text(predictor: BatchPredictor, info: RunInfo | None) -> str:
    """The rule that turned probabilities into the scored masks, in words."""
    vote = "one class per connected region" if predictor.vote == "component" else "one class per pixel"
    text = f"defect where 1 − p(background) ≥ {predictor.threshold:.2f}, {vote}"
    doc = info.decision() if info is not None else None
    if doc and doc.get("metric"):
        text += f" (chosen on the val split's {doc['metric'].replace('_', ' ')}"
        text += f", {doc['value']:.3f})" if doc.get("value") is not None else ")"
    return text


def _selection_note(info: RunInfo | None) -> str | None:
    """Say so when the best epoch and the threshold were chosen on pseudo-masks, not human masks."""
    if info is None:
        return None
    try:
        config = yaml.safe_load(info.config_path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if config.get("val_masks", "pseudo") == "pseudo" and info.extra().get("pseudo_kind") == "store":
        return (
            "Model selection (the best epoch) and the decision threshold used the val split's "
            "pseudo-masks, not human masks: they are as noisy as the teacher."
        )
    return None


def _gain_table(gains: dict[str, float | None] | None) -> list[tuple[str, list[str], list[list[object]]]]:
    """The gain as a report table (none without a teacher)."""
    if gains is None:
        return []
    return [("gain: student − teacher", ["metric", "gain"], [[k, v] for k, v in gains.items()])]


def _run_config(info: RunInfo) -> str | None:
    """The run's ``config.yaml`` as written (``None`` when unreadable): what was trained, for the report."""
    try:
        return info.config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
