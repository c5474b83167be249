"""The image-level tags route in ``weakseg benchmark --supervision tags``: rows beside the box rows.

On the benchmark's split (the same seeded test images as every box row), with tags derived from the
dataset (its tags, or the classes of its masks; defect-free images are the negatives):

1. the tag classifier is trained on the train split (``tags/classifier``);
2. every CAM teacher labels every image from its tags (``tags/stores/<variant>``); each store is
   scored on the test images: the pseudo-mask rows, with the ablations of METHODS.md 4: region-aware
   CAM without FGBP (``percentile=0``), without region weighting (``region_power=0``), and with a
   classifier trained without the defect-free images;
3. round 1's student trains on the region-aware CAM's masks cut at :data:`TRAINING_CUT` (undecided
   pixels ignored); round ``k``
   re-labels every image with round ``k-1``'s student from its tags (``student-tags``) and trains a
   new student on that; each round's student and each re-labelled store is scored on the test images;
4. the last round's student behind the classifier's gate (an image the classifier calls defect-free
   gets no mask: :mod:`weakseg.inference.gate`);
5. the student on human masks (the box route's ``supervised`` row, which the runner adds when only
   this route runs) is the reference the tags-only student is compared with.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from weakseg.annotations.readers import load_annotations
from weakseg.annotations.schema import AnnotationSet
from weakseg.benchmark.plan import RunSpec
from weakseg.evaluation.scoring import evaluate_annotations
from weakseg.utils.atomic import atomic_write_json, atomic_write_text

GROUP_TAGS = "image tags"

#: Default number of self-training rounds of the tags route (METHODS.md 4.4: 2-3 rounds saturate).
DEFAULT_TAG_ROUNDS = 3

#: The teacher whose masks the round-1 student learns from.
TAG_TEACHER = "region-cam"

#: The defect cut of the masks the round-1 student trains on. The cut that makes the best mask (0.2,
#: the teacher's default) is not the one that trains the best student: on Magnetic Tile's val split a
#: student trained on the 0.35 cut scores 0.291 binary IoU against 0.220 (docs/benchmarks.md).
TRAINING_CUT = 0.35
TRAINING_ROW = "region-cam-training-cut"


@dataclass(frozen=True)
class CamSpec:
    """One pseudo-mask row: a tag teacher, its options, and which classifier it explains."""

    key: str
    label: str
    teacher: str
    options: tuple[tuple[str, Any], ...] = ()
    classifier: str = "classifier"  # folder under tags/


CAM_ROWS: tuple[CamSpec, ...] = (
    CamSpec("cam", "CAM", "cam"),
    CamSpec("gradcam", "Grad-CAM", "gradcam"),
    CamSpec("gradcam++", "Grad-CAM++", "gradcam++"),
    CamSpec("layercam", "LayerCAM", "layercam"),
    CamSpec("region-cam", "region-aware CAM + FGBP", TAG_TEACHER),
    CamSpec(
        TRAINING_ROW,
        f"region-aware CAM + FGBP, cut at {TRAINING_CUT}",
        TAG_TEACHER,
        (("fg_threshold", TRAINING_CUT),),
    ),
    CamSpec("region-cam-no-fgbp", "region-aware CAM - FGBP", TAG_TEACHER, (("percentile", 0.0),)),
    CamSpec(
        "region-cam-no-region", "region-aware CAM - region weighting", TAG_TEACHER, (("region_power", 0.0),)
    ),
    CamSpec(
        "region-cam-no-negatives",
        "region-aware CAM, classifier without defect-free images",
        TAG_TEACHER,
        classifier="classifier-no-negatives",
    ),
)


def tag_rows(
    data: str | Path,
    test: AnnotationSet,
    out: Path,
    *,
    seeds: Sequence[int],
    rounds: int,
    classifier_settings: Sequence[str],
    split_seed: int,
    backbone: str,
    train: Any,
    predict: Any,
    console: Console,
) -> list[Any]:
    """The tags route's rows (see the module docstring). ``train(spec, seed, masks)`` and
    ``predict(run, test, path)`` are the runner's: a process per training, predictions kept on disk."""
    from weakseg.benchmark.runner import Row, Score, label_once

    folder = out / "tags"
    test_names = [r.file_name for r in test.images]
    from weakseg.training.classifier import classifier_config

    base = {"backbone": backbone, "seed": split_seed}
    classifiers = {
        "classifier": _classifier(
            data, folder / "classifier", out, classifier_config(classifier_settings, base), console
        ),
        "classifier-no-negatives": _classifier(
            data,
            folder / "classifier-no-negatives",
            out,
            classifier_config([*classifier_settings, "negatives=false"], base),
            console,
        ),
    }
    rows: list[Row] = []
    stores: dict[str, Path] = {}
    for spec in CAM_ROWS:
        config = {"classifier": str(classifiers[spec.classifier]), **dict(spec.options)}
        store = folder / "stores" / spec.key
        timing = label_once(data, spec.teacher, store, console, config)
        stores[spec.key] = store
        masks = _test_masks(store, test, test_names)
        score = Score(None, evaluate_annotations(masks, test, worst=0), timing, masks)
        rows.append(Row(f"tags:{spec.key}", f"pseudo-masks: {spec.label}", GROUP_TAGS, "image tags", [score]))

    students: dict[int, list[Score]] = {k: [] for k in range(1, rounds + 1)}
    relabelled: dict[int, list[Score]] = {k: [] for k in range(2, rounds + 1)}
    for seed in seeds:
        masks_path = stores[TRAINING_ROW]
        previous: Path | None = None
        for k in range(1, rounds + 1):
            if k > 1:
                store = folder / "stores" / f"round{k}" / f"seed{seed}"
                config = {"run": str(previous)}  # round k-1's student
                timing = label_once(data, "student-tags", store, console, config)
                masks = _test_masks(store, test, test_names)
                relabelled[k].append(Score(seed, evaluate_annotations(masks, test, worst=0), timing, masks))
                masks_path = store
            spec = RunSpec(f"tags-round{k}", f"tags student (round {k})")
            run, timing = train(spec, seed, masks_path)
            path = out / "predictions" / spec.key / f"seed{seed}.json"
            masks, predict_timing = predict(run, test, path)
            result = evaluate_annotations(masks, test, worst=0)
            students[k].append(Score(seed, result, {**timing, **predict_timing}, masks))
            previous = run
    for k in range(1, rounds + 1):
        if k > 1:
            rows.append(
                Row(
                    f"tags-relabelled-round{k}",
                    f"pseudo-masks: round {k - 1} student from tags",
                    GROUP_TAGS,
                    f"tags student (round {k - 1})",
                    relabelled[k],
                )
            )
        trained_on = f"region-aware CAM cut at {TRAINING_CUT}" if k == 1 else f"round {k} pseudo-masks"
        rows.append(Row(f"tags-round{k}", f"tags student (round {k})", GROUP_TAGS, trained_on, students[k]))
    rows.append(_gated(rows[-1], classifiers["classifier"], test))
    return rows


def _gated(row: Any, classifier: Path, test: AnnotationSet) -> Any:
    """The last round's student behind the classifier's gate (:mod:`weakseg.inference.gate`)."""
    from weakseg.benchmark.runner import Row, Score
    from weakseg.inference.gate import gate_by_classifier

    scores = []
    for score in row.scores:
        start = time.perf_counter()
        masks, _ = gate_by_classifier(score.masks, classifier)
        timing = {**score.timing, "gate_seconds": time.perf_counter() - start}
        scores.append(Score(score.seed, evaluate_annotations(masks, test, worst=0), timing, masks))
    label = f"{row.method} + classifier gate"
    return Row(f"{row.key}-gated", label, GROUP_TAGS, row.trained_on, scores)


def _test_masks(store: Path, test: AnnotationSet, names: list[str]) -> AnnotationSet:
    masks = load_annotations(store / "pseudo.json", "coco").with_files(names)
    return AnnotationSet(test.root, masks.class_map, masks.images, masks.format)


def _classifier(data: str | Path, folder: Path, out: Path, config: Any, console: Console) -> Path:
    """The tag classifier on the benchmark's split (trained once; resumed if cut off)."""
    from weakseg.training.classifier import train_classifier

    done = folder / "metrics.json"
    if not done.is_file():
        console.print(
            f"training the tag classifier{'' if config.negatives else ' without defect-free images'}"
        )
        folder.mkdir(parents=True, exist_ok=True)
        splits = folder / "splits.json"
        if not splits.is_file():
            atomic_write_text(splits, (out / "splits.json").read_text())  # the benchmark's split
        start = time.perf_counter()
        train_classifier(
            data, folder, config, resume=(folder / "weights" / "last.ckpt").is_file(), console=console
        )
        atomic_write_json(folder / "timing.json", {"train_wall_seconds": time.perf_counter() - start})
    return folder
