"""``weakseg evaluate``: one door to score anything that predicts masks against human masks.

What is scored is told by what ``target`` is:

* a **training run** folder: its student predicts the images (the run's test split by default), and
  its teacher's masks are scored on the same images (:mod:`weakseg.inference.evaluate_run`);
* an exported **ONNX model** (``.onnx`` with its metadata file): the same, through onnxruntime, with
  the source run's splits and teacher where that run folder still exists;
* a **pseudo-label store** (``store.json``) or a **predictions folder** (``weakseg predict``'s
  ``predictions.json``), or any COCO file of masks: their masks as they are.

Images are matched by file name. No image in common is an error (the usual cause is a prediction
made on another folder, or relative names that differ); ground-truth images without a prediction are
counted in a warning and scored as predicted empty, since a model that skipped them found nothing there.
"""

from __future__ import annotations

from pathlib import Path

from weakseg.annotations.readers import ReadOptions, load_annotations
from weakseg.annotations.schema import AnnotationSet
from weakseg.errors import DataError, IssueLog
from weakseg.evaluation.files import write_evaluation
from weakseg.evaluation.output import EvaluateOutput
from weakseg.evaluation.report import ReportMethod, write_report
from weakseg.evaluation.scoring import evaluate_annotations
from weakseg.inference.evaluate_run import evaluate_predictor
from weakseg.inference.predict import PREDICTIONS_FILE
from weakseg.inference.predictor import BatchPredictor, Predictor
from weakseg.inference.run import RunInfo, is_run_dir, load_run
from weakseg.pseudolabel.store import PseudoStore

__all__ = ["EvaluateOutput", "evaluate", "matched_images"]


def evaluate(
    target: str | Path,
    data: str | Path,
    *,
    out: str | Path | None = None,
    format: str = "auto",
    options: ReadOptions | None = None,
    worst: int = 12,
    eval_size: int | None = None,
    split: str | None = None,
    which: str = "best",
    teacher: str | Path | None = None,
    batch_size: int = 8,
) -> EvaluateOutput:
    """Score ``target`` (see the module docstring) against the masks of ``data``.

    Reports go to ``out`` (default ``<target>/eval``, or ``<model>.eval/`` beside an ONNX file):
    ``metrics.json``, per-image and per-class CSVs, a gallery of the worst images and ``report.html``.
    ``split``, ``which`` and ``teacher`` concern models (runs and ONNX files).
    """
    target = Path(target)
    if is_run_dir(target) or target.suffix.lower() == ".onnx":
        predictor, info, name, default_out = _model(target, which, batch_size)
        return evaluate_predictor(
            predictor,
            info,
            data,
            name=name,
            out=out or default_out,
            split=split,
            teacher=teacher,
            format=format,
            options=options,
            worst=worst,
            eval_size=eval_size,
        )
    pred, kind, label, config = _masks_of(target)
    issues = IssueLog()
    gt = load_annotations(data, format, options, issues)
    issues.raise_errors()
    warnings = matched_images(pred, gt, target, data)
    result = evaluate_annotations(pred, gt, worst=worst, eval_size=eval_size)
    title = f"{label} vs {Path(data).name}"
    out_dir = Path(out) if out else (target if target.is_dir() else target.parent) / "eval"
    files = write_evaluation(result, out_dir, gt=gt, pred=pred, title=title)
    files["report"] = write_report(
        out_dir / "report.html",
        title=title,
        gt=gt,
        methods=[ReportMethod(label, result, pred)],
        config=config,
        notes=[f"Masks: {target.resolve()}", f"Ground truth: {Path(data).resolve()}", *warnings],
        gallery=worst,
    )
    return EvaluateOutput(result, files, title, kind=kind, warnings=warnings)


def _model(target: Path, which: str, batch_size: int) -> tuple[BatchPredictor, RunInfo | None, str, Path]:
    """The predictor of a run or an ONNX file, the run behind it (if still there), a name, a report folder."""
    if target.suffix.lower() != ".onnx":
        predictor = Predictor(target, which=which, batch_size=batch_size)
        return predictor, predictor.run, f"{target.name} ({which})", target / "eval"
    from weakseg.deploy.onnx import OnnxPredictor  # onnxruntime is an optional extra

    onnx = OnnxPredictor(target, batch_size=batch_size)
    source = (onnx.meta.get("source") or {}).get("run")
    info = load_run(source) if source and is_run_dir(source) else None
    return onnx, info, f"{target.name} (ONNX)", target.with_suffix(".eval")


def _masks_of(target: Path) -> tuple[AnnotationSet, str, str, dict | None]:
    """A store's, a predictions folder's or a COCO file's masks, its kind, report label and config."""
    store = PseudoStore(target)
    if store.exists():
        if not store.merged_path.is_file():
            raise DataError(
                target, "has no pseudo.json yet: finish every shard, then run pseudo-label --merge-only"
            )
        meta = store.meta()
        return load_annotations(store.merged_path, "coco"), "store", f"teacher: {meta.get('teacher')}", meta
    predictions = target / PREDICTIONS_FILE if target.is_dir() else target
    if predictions.is_file() and predictions.suffix.lower() == ".json":
        return load_annotations(predictions, "coco"), "predictions", f"predictions: {target.name}", None
    raise DataError(
        target,
        "is not something weakseg can score: expected a training run (config.yaml, weights/), an .onnx "
        f"model, a pseudo-label store (store.json) or a predictions folder ({PREDICTIONS_FILE})",
    )


def matched_images(pred: AnnotationSet, gt: AnnotationSet, target: str | Path, data: str | Path) -> list[str]:
    """Refuse predictions that share no image with the ground truth; warn about the missing ones."""
    names = {r.file_name for r in pred.images}
    matched = [r.file_name for r in gt.images if r.file_name in names]
    if not matched:
        theirs = ", ".join(sorted(names)[:3]) or "none"
        ours = ", ".join(sorted(r.file_name for r in gt.images)[:3]) or "none"
        raise DataError(
            target,
            f"no image in common with {data} ({len(names)} predicted, e.g. {theirs}; ground truth "
            f"{len(gt.images)}, e.g. {ours}): file names are matched relative to each dataset's root",
        )
    missing = len(gt.images) - len(matched)
    if missing:
        return [f"{missing} of {len(gt.images)} ground-truth images have no prediction; scored as empty"]
    return []
