"""``weakseg evaluate``: score a pseudo-label store (later also a trained run) against ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from weakseg.annotations.readers import ReadOptions, load_annotations
from weakseg.errors import DataError, IssueLog
from weakseg.evaluation.audit import EvaluationResult, evaluate_annotations, write_evaluation
from weakseg.pseudolabel.store import PseudoStore


@dataclass
class EvaluateOutput:
    result: EvaluationResult
    files: dict[str, Path]
    title: str


def evaluate(
    target: str | Path,
    data: str | Path,
    *,
    out: str | Path | None = None,
    format: str = "auto",
    options: ReadOptions | None = None,
    worst: int = 12,
    eval_size: int | None = None,
) -> EvaluateOutput:
    """Score ``target`` (a pseudo-label store) against the human masks of ``data``.

    Reports go to ``out`` (default ``<target>/eval``): ``metrics.json``, per-image and per-class CSVs
    and a gallery of the worst images.
    """
    target = Path(target)
    store = PseudoStore(target)
    if not store.exists():
        raise DataError(target, "is not a pseudo-label store (no store.json); run weakseg pseudo-label first")
    if not store.merged_path.is_file():
        raise DataError(
            target, "has no pseudo.json yet: finish every shard, then run pseudo-label --merge-only"
        )
    pred = load_annotations(store.merged_path, "coco")
    issues = IssueLog()
    gt = load_annotations(data, format, options, issues)
    issues.raise_errors()
    result = evaluate_annotations(pred, gt, worst=worst, eval_size=eval_size)
    title = f"teacher {store.meta().get('teacher')} vs {Path(data).name}"
    files = write_evaluation(result, Path(out) if out else target / "eval", gt=gt, pred=pred, title=title)
    return EvaluateOutput(result, files, title)
