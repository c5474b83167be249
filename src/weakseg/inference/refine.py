"""``weakseg refine``: boxes in, masks out, with a trained student as the teacher.

``refine(run, data, out)`` is :func:`weakseg.pseudolabel.runner.pseudo_label` with the ``student``
teacher (:mod:`weakseg.inference.teacher`), so the output is an ordinary pseudo-label store (sharded,
resumable, merged into ``pseudo.json``) that ``weakseg train --pseudo`` accepts: refine -> retrain
rounds need nothing else. :func:`compare_with_teacher` scores the refined masks and the teacher's
masks against the human masks of the same images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from weakseg.annotations.readers import ReadOptions, load_annotations
from weakseg.annotations.schema import AnnotationSet
from weakseg.errors import IssueLog, WeaksegError
from weakseg.evaluation.scoring import EvaluationResult, evaluate_annotations
from weakseg.inference.evaluate_run import gain, load_teacher
from weakseg.inference.run import load_run
from weakseg.pseudolabel.runner import PseudoLabelResult, pseudo_label
from weakseg.pseudolabel.store import PseudoStore
from weakseg.teachers.refine import RefineConfig


def refine(
    run: str | Path,
    data: str | Path | AnnotationSet,
    out: str | Path,
    *,
    which: str = "best",
    threshold: float | str = "box",
    max_threshold: float | None = None,
    tta: bool = True,
    probability: str = "foreground",
    pseudo: str | Path | None = None,
    student_weight: float = 1.0,
    format: str = "auto",
    options: ReadOptions | None = None,
    refine_config: RefineConfig | None = None,
    workers: int = 1,
    shard: int | None = None,
    num_shards: int | None = None,
    merge: bool = True,
    console: Console | None = None,
) -> PseudoLabelResult:
    """Label every box of ``data`` with the run's student into the store ``out``.

    ``threshold="box"`` picks per box the highest threshold, not above ``max_threshold`` (by default
    the run's validated one), whose mask spans the box in x and y; a number is a fixed threshold.
    ``tta`` averages in the horizontally mirrored image. ``pseudo`` (a teacher store) turns on the
    quality-weighted fusion of the student's probability with the teacher's mask, per box, before the
    threshold. See :mod:`weakseg.inference.teacher`.
    """
    info = load_run(run)  # a clear error before anything is written
    console = console or Console(stderr=True)
    if not isinstance(data, AnnotationSet):
        issues = IssueLog()  # per-file problems skip the image, as in pseudo-label
        data = load_annotations(data, format, options, issues)
        for issue in issues:
            console.print(f"[yellow]skipped: {issue}[/yellow]", highlight=False)
    if data.class_map != info.class_map:
        raise WeaksegError(
            f"class maps differ: the run has {info.class_map.describe()}, "
            f"the data has {data.class_map.describe()}"
        )
    config: dict[str, Any] = {
        "run": str(Path(run).resolve()),
        "which": which,
        "threshold": threshold,
        "tta": tta,
        "probability": probability,
    }
    if max_threshold is not None:
        config["max_threshold"] = max_threshold
    if pseudo is not None:
        config.update(pseudo=str(Path(pseudo).resolve()), student_weight=student_weight)
    return pseudo_label(
        data,
        "student",
        out,
        teacher_config=config,
        format=format,
        options=options,
        refine=refine_config,
        workers=workers,
        shard=shard,
        num_shards=num_shards,
        merge=merge,
        console=console,
    )


def compare_with_teacher(
    refined: str | Path,
    data: str | Path,
    teacher: str | Path | None,
    *,
    format: str = "auto",
    options: ReadOptions | None = None,
) -> dict[str, Any] | None:
    """Refined masks vs the teacher's masks, both scored against ``data``'s human masks.

    Returns ``None`` when ``data`` has no human mask to score against; the teacher part is ``None``
    when no teacher store is given.
    """
    gt = load_annotations(data, format, options)
    if not any(inst.mask is not None for _, inst in gt.instances()):
        return None
    store = PseudoStore(refined)
    mine = load_annotations(store.merged_path, "coco")
    student = evaluate_annotations(mine, gt, worst=0)
    teacher_result: EvaluationResult | None = None
    if teacher is not None:
        teacher_ann, _, _ = load_teacher(teacher)
        teacher_set = teacher_ann.with_files(r.file_name for r in mine.images)
        teacher_result = evaluate_annotations(teacher_set, gt, worst=0)
    return {
        "refined": student.to_dict(),
        "teacher": teacher_result.to_dict() if teacher_result is not None else None,
        "gain": gain(student, teacher_result),
        "refined_result": student,
        "teacher_result": teacher_result,
    }
