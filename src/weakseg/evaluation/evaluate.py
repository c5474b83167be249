"""``weakseg evaluate``: score a pseudo-label store, or a trained run and its teacher, against human masks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weakseg.annotations.readers import ReadOptions, load_annotations
from weakseg.errors import DataError, IssueLog
from weakseg.evaluation.audit import EvaluationResult, evaluate_annotations, write_evaluation
from weakseg.evaluation.report import ReportMethod, write_report
from weakseg.pseudolabel.store import PseudoStore


@dataclass
class EvaluateOutput:
    result: EvaluationResult
    files: dict[str, Path]
    title: str
    kind: str = "store"  # "store" or "run"
    teacher: EvaluationResult | None = None  # runs: the teacher's masks on the same images
    teacher_note: str | None = None  # runs: why the teacher row is missing
    comparison: dict[str, Any] | None = None  # runs: {"student", "teacher", "gain", ...}

    def to_dict(self) -> dict[str, Any]:
        """A store's metrics, or for a run ``{"student", "teacher", "gain", ...}`` side by side."""
        return self.comparison if self.comparison is not None else self.result.to_dict()


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
    """Score ``target`` (a pseudo-label store or a training run folder) against the masks of ``data``.

    Reports go to ``out`` (default ``<target>/eval``): ``metrics.json``, per-image and per-class CSVs,
    a gallery of the worst images and ``report.html`` (all of it on one page). For a run, the student
    predicts the images (``split``, see :mod:`weakseg.inference.evaluate_run`) with the ``which``
    checkpoint and the teacher's masks are scored on the same images (into ``out/teacher``);
    ``comparison.json`` holds both and the gain, ``report.html`` shows both.
    """
    target = Path(target)
    from weakseg.inference.run import is_run_dir

    if is_run_dir(target):
        from weakseg.inference.evaluate_run import evaluate_run

        return evaluate_run(
            target,
            data,
            out=out,
            split=split,
            which=which,
            teacher=teacher,
            format=format,
            options=options,
            worst=worst,
            eval_size=eval_size,
            batch_size=batch_size,
        )
    store = PseudoStore(target)
    if not store.exists():
        raise DataError(
            target,
            "is not a pseudo-label store (no store.json) nor a training run (config.yaml, weights/)",
        )
    if not store.merged_path.is_file():
        raise DataError(
            target, "has no pseudo.json yet: finish every shard, then run pseudo-label --merge-only"
        )
    pred = load_annotations(store.merged_path, "coco")
    issues = IssueLog()
    gt = load_annotations(data, format, options, issues)
    issues.raise_errors()
    result = evaluate_annotations(pred, gt, worst=worst, eval_size=eval_size)
    meta = store.meta()
    title = f"teacher {meta.get('teacher')} vs {Path(data).name}"
    out_dir = Path(out) if out else target / "eval"
    files = write_evaluation(result, out_dir, gt=gt, pred=pred, title=title)
    files["report"] = write_report(
        out_dir / "report.html",
        title=title,
        gt=gt,
        methods=[ReportMethod(f"teacher: {meta.get('teacher')}", result, pred)],
        config=meta,
        notes=[f"Pseudo-label store: {target.resolve()}", f"Ground truth: {Path(data).resolve()}"],
        gallery=worst,
    )
    return EvaluateOutput(result, files, title)
