"""``weakseg benchmark DATA --out DIR``: teachers, refined masks and students on one held-out test set.

The folder ``DIR`` holds every expensive product, each written atomically once finished, so an
interrupted benchmark resumes where it stopped and finished rows are never recomputed:

* ``splits.json``: the seeded class-stratified split every row shares;
* ``teachers/<name>/``: pseudo-label stores (resumable themselves) and ``<name>.done.json`` timings;
* ``runs/<key>/seed<s>/``: training runs, one per training seed (resumed from ``last.ckpt`` when cut
  off), ``seed<s>.done.json`` timings and peak memory from the run's own process
  (:mod:`weakseg.benchmark.child`);
* ``cache/<name>/``: frozen-backbone features, shared by the runs (and seeds) that compute the same;
* ``refined/<key>/seed<s>/``: stores of a run refining the test boxes, or every box of the data set
  (the rounds' stores, which the next round trains on);
* ``predictions/<key>/seed<s>.json``: a run's masks for the test images (COCO RLE) and its speed.

Scoring is recomputed from those files on every call (it is cheap and deterministic), then written
as ``results.json``, ``results.csv``, ``table.md`` and ``report.html``. With several training seeds
every score is reported as the mean over seeds and its min-max; the per-seed values are kept in
``results.json`` and ``results.csv``.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from weakseg.annotations.readers import load_annotations
from weakseg.annotations.schema import AnnotationSet
from weakseg.annotations.splits import apply_splits, split_source, splits_for
from weakseg.annotations.writers.coco import coco_dict
from weakseg.benchmark.plan import (
    DEFAULT_ROUNDS,
    DEFAULT_SETTINGS,
    GROUP_BOXES,
    GROUP_FREE,
    LABELS,
    BenchmarkSettings,
    RefineSpec,
    RunSpec,
    make_plan,
)
from weakseg.errors import DataError, WeaksegError
from weakseg.evaluation.scoring import EvaluationResult, evaluate_annotations
from weakseg.pseudolabel.runner import checked_annotations, pseudo_label
from weakseg.student.unet import require_smp
from weakseg.training.config import TrainConfig, load_config
from weakseg.utils.atomic import atomic_write_json, atomic_write_text

#: Rows (by key) whose masks appear in the report's gallery beside the teacher's; the rest are in the
#: tables only.
#: The routes a benchmark can compare (``--supervision``).
SUPERVISION = ("boxes", "tags")

GALLERY_ROWS = ("refined-student", "student", "unet")

#: The score columns of the table (results.json keys), each reported as mean and min-max over seeds.
SCORES = ("binary_iou", "binary_recall", "binary_precision", "miou", "anomaly_miou", "anomaly_f1")


def summarize(values: Sequence[float | None]) -> tuple[float | None, float | None, float | None]:
    """Mean, min and max of the defined values; undefined ones (None) are left out, as in every mean
    of the evaluation, and all-undefined gives (None, None, None)."""
    defined = [float(v) for v in values if v is not None]
    if not defined:
        return None, None, None
    return statistics.fmean(defined), min(defined), max(defined)


def format_spread(values: Sequence[float | None]) -> str:
    """``"0.652 (0.640-0.661)"``: the mean, and the range when more than one value is defined."""
    mean, low, high = summarize(values)
    if mean is None:
        return "-"
    if sum(v is not None for v in values) < 2:
        return _num(mean)
    return spread_text(mean, low, high)


def spread_text(mean: float, low: float | None, high: float | None) -> str:
    """``mean (low-high)``; a range with a negative end reads ``(-0.020 to 0.003)``, which a hyphen
    would garble."""
    if low is None or high is None:
        return _num(mean)
    sep = "-" if _num(low)[0] != "-" else " to "
    return f"{_num(mean)} ({_num(low)}{sep}{_num(high)})"


def _num(value: float) -> str:
    """Three decimals, without the sign of a value that rounds to zero (no "-0.000")."""
    text = f"{value:.3f}"
    return text[1:] if text == "-0.000" else text


@dataclass
class Score:
    """A row's scores for one training seed (``None`` for a teacher, which has no training seed)."""

    seed: int | None
    result: EvaluationResult
    timing: dict[str, Any]
    masks: AnnotationSet

    def values(self) -> dict[str, Any]:
        m = self.result.metrics
        return {
            **{k: m[k] for k in SCORES},
            "per_class_iou": {c: v["iou"] for c, v in m["per_class"].items() if c != "background"},
        }


@dataclass
class Row:
    """One line of the table: a method's scores on the test images (per seed) and what it cost."""

    key: str  # "teacher:<name>" for a teacher, else the plan's key
    method: str
    group: str
    trained_on: str
    scores: list[Score]

    @property
    def seeds(self) -> list[int | None]:
        return [s.seed for s in self.scores]

    @property
    def result(self) -> EvaluationResult:
        """The first seed's result (the report's per-image views show one seed)."""
        return self.scores[0].result

    @property
    def masks(self) -> AnnotationSet:
        return self.scores[0].masks

    @property
    def timing(self) -> dict[str, Any]:
        """Mean over seeds of every timing (one seed: its timings as they are)."""
        if len(self.scores) == 1:
            return dict(self.scores[0].timing)
        keys = dict.fromkeys(k for s in self.scores for k in s.timing)
        return {k: summarize([s.timing.get(k) for s in self.scores])[0] for k in keys}

    def score_for(self, seed: int) -> Score:
        """The seed's score; a teacher's single score stands for every seed."""
        return next((s for s in self.scores if s.seed == seed), self.scores[0])

    def values(self, name: str) -> list[float | None]:
        """A score per seed (``iou_<class>`` for a class)."""
        if name.startswith("iou_"):
            return [s.values()["per_class_iou"].get(name[4:]) for s in self.scores]
        return [s.values()[name] for s in self.scores]

    def to_dict(self) -> dict[str, Any]:
        """Means (the table's numbers), their min-max when several seeds, and every seed's values."""
        classes = list(dict.fromkeys(c for s in self.scores for c in s.values()["per_class_iou"]))
        doc: dict[str, Any] = {"key": self.key, "method": self.method, "group": self.group}
        doc["trained_on"] = self.trained_on
        doc.update({k: summarize(self.values(k))[0] for k in SCORES})
        doc["per_class_iou"] = {c: summarize(self.values(f"iou_{c}"))[0] for c in classes}
        doc["timing"] = self.timing
        if len(self.scores) > 1:
            doc["spread"] = {k: list(summarize(self.values(k))[1:]) for k in SCORES}
        doc["seeds"] = [{"seed": s.seed, **s.values(), "timing": s.timing} for s in self.scores]
        return doc


@dataclass
class BenchmarkOutput:
    out: Path
    settings: BenchmarkSettings
    teacher: str  # the teacher the students learned from
    rows: list[Row]
    comparisons: dict[str, Any]  # mean over seeds
    files: dict[str, Path]
    wall_seconds: float
    comparisons_spread: dict[str, Any] = field(default_factory=dict)  # [min, max] over seeds
    comparisons_per_seed: dict[int, dict[str, Any]] = field(default_factory=dict)


def benchmark(
    data: str | Path,
    out: str | Path,
    *,
    teachers: tuple[str, ...] = ("box", "contrast", "grabcut"),
    backbone: str = "lite0",
    seed: int = 0,
    epochs: int | None = None,
    size: int | None = None,
    settings: tuple[str, ...] | None = None,
    seeds: Sequence[int] | None = None,
    rounds: int = DEFAULT_ROUNDS,
    rows: Sequence[str] | None = None,
    splits_file: str | Path | None = None,
    supervision: Sequence[str] = ("boxes",),
    tag_rounds: int | None = None,
    classifier_settings: Sequence[str] = (),
    console: Console | None = None,
) -> BenchmarkOutput:
    """Run (or resume) the comparison on ``data`` into ``out``; see the module docstring.

    ``seed`` makes the split; every training row is trained once per ``seeds`` entry (default: just
    ``seed``) on that one split, so the spread over seeds is training noise on a fixed test set.
    ``rounds`` refine -> retrain rounds (1: none); ``rows`` limits the rows to those keys and what
    they need (None: every row). The split is the dataset's own where it declares one (or
    ``splits_file``'s), else made with ``seed``; see :func:`~weakseg.annotations.splits.choose_splits`.

    ``supervision``: ``"boxes"`` (the rows above), ``"tags"`` (the image-level tags route of
    :mod:`weakseg.benchmark.tags`, ``tag_rounds`` self-training rounds, with the student on human
    masks as its reference), or both, side by side in one table and report.
    """
    from weakseg.benchmark.tags import DEFAULT_TAG_ROUNDS, tag_rows

    console = console or Console(stderr=True)
    started = time.perf_counter()
    out = Path(out)
    supervision = tuple(dict.fromkeys(supervision))
    unknown = [s for s in supervision if s not in SUPERVISION]
    if unknown or not supervision:
        raise WeaksegError(
            f"--supervision: choose from {', '.join(SUPERVISION)}, got {', '.join(supervision)}"
        )
    tag_rounds = DEFAULT_TAG_ROUNDS if tag_rounds is None else tag_rounds
    if tag_rounds < 1:
        raise WeaksegError(f"--tag-rounds must be at least 1, got {tag_rounds}")
    if "boxes" in supervision:
        plan = make_plan(rounds, rows)
        if "tags" in supervision and "supervised" not in plan.keys:
            plan = make_plan(rounds, [*plan.keys, "supervised"])
    else:
        teachers = ()
        plan = make_plan(rounds, ["supervised"])
    seeds = tuple(seeds) if seeds else (seed,)
    if len(set(seeds)) != len(seeds):
        raise WeaksegError(f"seeds: each seed once, got {list(seeds)}")
    settings = (*DEFAULT_SETTINGS, *(settings or ()))  # later settings win
    if any(s.partition("=")[0].strip() == "seed" for s in settings):
        raise WeaksegError("--set seed=...: the training seeds are --seeds (the split's is --seed)")
    config = BenchmarkSettings(
        str(Path(data).resolve()),
        tuple(teachers),
        backbone,
        seed,
        TrainConfig.epochs if epochs is None else epochs,
        TrainConfig.size[0] if size is None else size,
        settings,
        seeds=seeds,
        rounds=rounds,
        rows=plan.keys,
        supervision=supervision,
        tag_rounds=tag_rounds if "tags" in supervision else None,
        classifier_settings=tuple(classifier_settings),
    )
    if "tags" in supervision:  # a bad classifier setting fails now, not after the box rows
        from weakseg.training.classifier import classifier_config

        classifier_config(config.classifier_settings, {"backbone": backbone, "seed": seed})
    for spec in plan.runs:  # a bad setting fails here, before an hour of work, not in a training process
        if load_config(None, [*config.train_args(seeds[0]), *spec.overrides]).model == "unet":
            require_smp()
    # doctor's rules once, before anything is written (each teacher's labelling then skips its own)
    gt = checked_annotations(data)[0]
    _check_settings(out, config)

    unmasked = [r.file_name for r in gt.images if any(i.mask is None for i in r.instances)]
    apply_splits(gt, splits_for(gt, out / "splits.json", user_file=splits_file, seed=seed))
    test = gt.subset("test")
    fit_names = {r.file_name for r in gt.images if r.split in ("train", "val") and r.instances}
    test_names = [r.file_name for r in test.images]
    if not any(r.instances for r in test.images):
        raise DataError(data, "the test split has no defect image: nothing to benchmark")
    n_defects = sum(bool(r.instances) for r in test.images)
    console.print(
        f"{data}: {len(gt.images)} images, test {len(test.images)} "
        f"({n_defects} with defects; split {split_source(out / 'splits.json')})"
        + (f"; {len(unmasked)} images without masks are not scored" if unmasked else "")
    )
    # val_masks=gt refuses val images with unmasked instances; the ceilings train on the human masks,
    # so selecting on them (val_masks=pseudo) is the same choice where masks exist.
    unmasked_names = set(unmasked)
    unmasked_val = any(r.split == "val" and r.file_name in unmasked_names for r in gt.images)

    # 1. Teachers label every box; the best on train+val (never test) teaches the students.
    table: list[Row] = []
    best, best_fit, fit_scores = "", -1.0, {}
    for name in config.teachers:
        masks, timing = _teacher(data, name, out / "teachers", console)
        fit = evaluate_annotations(masks.with_files(fit_names), gt.with_files(fit_names), worst=0)
        fit_scores[name] = fit.metrics["binary_iou"]
        test_masks = masks.with_files(test_names)
        result = evaluate_annotations(test_masks, test, worst=0)
        score = Score(None, result, timing, test_masks)
        table.append(Row(f"teacher:{name}", f"teacher: {name}", GROUP_BOXES, "boxes", [score]))
        if (fit_scores[name] or 0.0) > best_fit:
            best, best_fit = name, fit_scores[name] or 0.0
    if config.teachers:
        console.print(f"the teacher (best train+val binary IoU, {best_fit:.3f}): {best}")
    teacher_store = out / "teachers" / best

    # 2. Runs (each in its own process, on the same split file) and the refined stores, per seed;
    # a run or store is made once, when first needed, and reused from disk on a later call.
    boxes = AnnotationSet(test.root, test.class_map, [r for r in test.images if r.instances], test.format)
    trained: dict[tuple[str, int], tuple[Path, dict[str, Any]]] = {}
    refined: dict[tuple[str, int], tuple[Path, dict[str, Any]]] = {}

    def run_of(key: str, train_seed: int) -> tuple[Path, dict[str, Any]]:
        if (key, train_seed) not in trained:
            spec = plan.run(key)
            masks: str | Path = teacher_store
            if spec.supervised:
                masks = data
            elif spec.masks:  # a round's student: the previous round's store, same seed
                masks = store_of(spec.masks, train_seed)[0]
            overrides = spec.overrides
            if unmasked_val and "val_masks=gt" in overrides:
                console.print(f"{key}: val images lack some masks, so it selects with val_masks=pseudo")
                overrides = tuple("val_masks=pseudo" if o == "val_masks=gt" else o for o in overrides)
            trained[key, train_seed] = _train(spec, train_seed, overrides, data, masks, out, config, console)
        return trained[key, train_seed]

    def store_of(key: str, train_seed: int) -> tuple[Path, dict[str, Any]]:
        if (key, train_seed) not in refined:
            spec = plan.refine(key)
            run, _ = run_of(spec.run, train_seed)
            store = out / "refined" / key / f"seed{train_seed}"
            fuse = teacher_store if spec.fuse_with_teacher else None
            source = data if spec.whole_dataset else boxes  # a round labels every box of the data set
            refined[key, train_seed] = (store, _refine(spec, run, source, store, fuse, console))
        return refined[key, train_seed]

    for s in seeds:  # seed by seed: an interrupted benchmark has whole tables of the first seeds
        for run_spec in plan.runs:
            run_of(run_spec.key, s)
        for refine_spec in plan.refines:
            store_of(refine_spec.key, s)

    def trained_on(spec: RunSpec) -> str:
        if spec.supervised:
            return "human masks"
        return plan.labels[spec.masks] if spec.masks else f"teacher: {best}"

    # 3. Scores: refined masks on the test boxes, then the box-free rows on the test images.
    for refine_spec in plan.refines:
        scores = []
        for s in seeds:
            store, timing = refined[refine_spec.key, s]
            masks = load_annotations(store / "pseudo.json", "coco")
            if refine_spec.whole_dataset:
                masks = masks.with_files(test_names)
            scores.append(Score(s, evaluate_annotations(masks, test, worst=0), timing, masks))
        label = trained_on(plan.run(refine_spec.run))
        table.append(Row(refine_spec.key, refine_spec.label, GROUP_BOXES, label, scores))
    for run_spec in plan.runs:
        scores = []
        for s in seeds:
            run, timing = trained[run_spec.key, s]
            path = out / "predictions" / run_spec.key / f"seed{s}.json"
            masks, predict_timing = _predict(run, test, path)
            result = evaluate_annotations(masks, test, worst=0)
            scores.append(Score(s, result, {**timing, **predict_timing}, masks))
        table.append(Row(run_spec.key, run_spec.label, GROUP_FREE, trained_on(run_spec), scores))

    if "tags" in supervision:
        table += tag_rows(
            data,
            test,
            out,
            seeds=seeds,
            rounds=tag_rounds,
            classifier_settings=config.classifier_settings,
            split_seed=seed,
            backbone=backbone,
            train=lambda spec, s, masks: _train(spec, s, (), data, masks, out, config, console),
            predict=_predict,
            console=console,
        )

    per_seed = {s: _comparisons(table, s, best) for s in seeds}
    comparisons, spread = aggregate_comparisons(list(per_seed.values()))
    wall = time.perf_counter() - started
    calls = _log_call(out, wall)
    files = _write_outputs(
        out, config, gt, test, table, best, fit_scores, (comparisons, spread, per_seed), calls
    )
    return BenchmarkOutput(out, config, best, table, comparisons, files, wall, spread, per_seed)


# ----------------------------------------------------------------------------------------------------
# settings and resumption


def _check_settings(out: Path, config: BenchmarkSettings) -> None:
    """A folder keeps the settings of its first call; resuming with other settings would mix rows."""
    path = out / "benchmark.json"
    wanted = json.loads(json.dumps(asdict(config)))
    if path.is_file():
        have = json.loads(path.read_text())
        # settings added later, with the value that older folders were made with
        have = {"supervision": ["boxes"], "tag_rounds": None, "classifier_settings": [], **have}
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


def label_once(
    data: str | Path,
    teacher: str,
    store: Path,
    console: Console,
    teacher_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Label ``data`` with ``teacher`` into ``store`` once (resumed if cut off; ``<store>.done.json``
    marks it finished) and return the labelling speed."""
    done_path = store.with_name(store.name + ".done.json")
    timing = _done(done_path)
    if timing is None:
        console.print(f"teacher {teacher}: labelling into {store}")
        start = time.perf_counter()
        result = pseudo_label(
            data, teacher, store, teacher_config=teacher_config, checked=True, console=console
        )
        seconds = time.perf_counter() - start
        images = result.processed + result.skipped
        timing = {"label_seconds": seconds, "label_images": images, "label_images_per_s": images / seconds}
        atomic_write_json(done_path, timing)
    return timing


def _teacher(data: str | Path, name: str, folder: Path, console: Console) -> tuple[AnnotationSet, dict]:
    """The teacher's store (labelled once, resumed if cut off) and its labelling speed."""
    timing = label_once(data, name, folder / name, console)
    return load_annotations(folder / name / "pseudo.json", "coco"), timing


def _train(
    spec: RunSpec,
    seed: int,
    overrides: tuple[str, ...],
    data: str | Path,
    masks: str | Path,
    out: Path,
    config: BenchmarkSettings,
    console: Console,
) -> tuple[Path, dict[str, Any]]:
    """Train (or resume, or reuse) one run with one seed in a process of its own; returns it and its
    timings. Seeds share the feature cache: frozen-backbone features do not depend on the seed."""
    folder = out / "runs" / spec.key
    run = folder / f"seed{seed}"
    done_path = folder / f"seed{seed}.done.json"
    timing = _done(done_path)
    if timing is None:
        resume = (run / "weights" / "last.ckpt").is_file()
        console.print(f"training {spec.key}, seed {seed}" + (" (resuming)" if resume else ""))
        run.mkdir(parents=True, exist_ok=True)
        splits = run / "splits.json"
        if not splits.is_file():
            atomic_write_text(splits, (out / "splits.json").read_text())  # every run on the same split
        report = folder / f"seed{seed}.child.json"
        args = [str(report), str(data), str(masks), str(run), str(out / "cache" / spec.cache)]
        args += ["resume" if resume else "fresh", *config.train_args(seed), *overrides]
        start = time.perf_counter()
        env = {**os.environ, "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "ignore")}
        done = subprocess.run([sys.executable, "-m", "weakseg.benchmark.child", *args], env=env, check=False)
        if done.returncode != 0:
            raise WeaksegError(
                f"training {spec.key} (seed {seed}) failed (exit {done.returncode}); its folder: {run}"
            )
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


def _refine(
    spec: RefineSpec,
    run: Path,
    boxes: str | Path | AnnotationSet,
    store: Path,
    teacher_store: Path | None,
    console: Console,
) -> dict[str, Any]:
    """The run's refined masks of ``boxes`` in ``store`` (resumed if cut off) and the labelling speed."""
    from weakseg.inference.refine import refine

    done_path = store.with_name(store.name + ".done.json")
    timing = _done(done_path)
    if timing is None:
        console.print(f"refining with {spec.run} ({store.parent.name}, {store.name})")
        start = time.perf_counter()
        result = refine(run, boxes, store, threshold=spec.threshold, tta=spec.tta, pseudo=teacher_store)
        seconds = time.perf_counter() - start
        images = result.processed + result.skipped
        timing = {"label_seconds": seconds, "label_images": images, "label_images_per_s": images / seconds}
        atomic_write_json(done_path, timing)
    return timing


# ----------------------------------------------------------------------------------------------------
# comparisons and outputs


def _comparisons(rows: list[Row], seed: int, teacher: str) -> dict[str, Any]:
    """The questions the benchmark answers for one training seed, each a difference or ratio of two
    rows (teachers stand for every seed); None where a row is not in this benchmark (``--rows``)."""
    by = {r.key: r.score_for(seed).result.metrics for r in rows}
    times = {r.key: r.score_for(seed).timing for r in rows}

    def diff(a: str, b: str, key: str = "binary_iou") -> float | None:
        if a not in by or b not in by:
            return None
        x, y = by[a][key], by[b][key]
        return None if x is None or y is None else x - y

    def ratio(a: str, b: str, key: str = "binary_iou") -> float | None:
        if a not in by or b not in by:
            return None
        x, y = by[a][key], by[b][key]
        return None if x is None or not y else x / y

    def speed_ratio(a: str, b: str) -> float | None:
        x = times.get(a, {}).get("predict_images_per_s")
        y = times.get(b, {}).get("predict_images_per_s")
        return x / y if x and y else None

    teachers = [k for k in by if k.startswith("teacher:")]
    refined = "refined-student"
    gains = {t.removeprefix("teacher:"): diff(refined, t) for t in teachers}
    rounds = sorted(
        (k for k in by if k.startswith("refined-round")), key=lambda k: int(k.removeprefix("refined-round"))
    )
    students = sorted(
        (k for k in by if k.startswith("student-round")), key=lambda k: int(k.removeprefix("student-round"))
    )
    tag_rounds = sorted(
        (k for k in by if k.startswith("tags-round") and not k.endswith("-gated")),
        key=lambda k: int(k.removeprefix("tags-round")),
    )
    tags: dict[str, Any] = {}
    if tag_rounds:
        last = tag_rounds[-1]
        gated = f"{last}-gated"
        tags = {
            "tags_region_cam_minus_gradcam_binary_iou": diff("tags:region-cam", "tags:gradcam"),
            "tags_fgbp_gain_binary_iou": diff("tags:region-cam", "tags:region-cam-no-fgbp"),
            "tags_region_weighting_gain_binary_iou": diff("tags:region-cam", "tags:region-cam-no-region"),
            "tags_negatives_gain_binary_iou": diff("tags:region-cam", "tags:region-cam-no-negatives"),
            "tags_student_minus_region_cam_binary_iou": diff("tags-round1", "tags:region-cam"),
            "tags_round_gains_binary_iou": {
                k.removeprefix("tags-"): diff(k, p) for p, k in itertools.pairwise(tag_rounds)
            },
            "tags_last_round_minus_first_binary_iou": diff(last, "tags-round1"),
            "tags_student_over_supervised_binary_iou": ratio(last, "supervised"),
            "tags_student_over_supervised_anomaly_miou": ratio(last, "supervised", "anomaly_miou"),
            "tags_gate_gain_binary_iou": diff(gated, last),
            "tags_gated_student_over_supervised_binary_iou": ratio(gated, "supervised"),
        }
    if not teachers:
        return tags
    return {
        **tags,
        "teacher": teacher,
        "refined_minus_teacher_binary_iou": gains,
        "refined_beats_every_teacher": all((g or 0.0) > 0 for g in gains.values()) if refined in by else None,
        "refined_minus_best_teacher_binary_iou": diff(refined, f"teacher:{teacher}"),
        "box_aware_refine_gain_binary_iou": diff(refined, "refined-student-fixed"),
        "round_gain_binary_iou": diff(rounds[-1], rounds[0]) if len(rounds) > 1 else None,
        "student_round_gain_binary_iou": diff(students[-1], "student") if students else None,
        "student_minus_unet_binary_iou": diff("student", "unet"),
        "student_minus_unet_finetuned_binary_iou": diff("student", "unet-finetuned"),
        "student_over_supervised_binary_iou": ratio("student", "supervised"),
        "student_over_supervised_anomaly_miou": ratio("student", "supervised", "anomaly_miou"),
        "supervised_minus_unet_finetuned_supervised_binary_iou": diff(
            "supervised", "unet-finetuned-supervised"
        ),
        "mean_teacher_gain_binary_iou": diff("mean-teacher", "student"),
        "self_correction_recall_gain": diff("student", "no-self-correction", "binary_recall"),
        "binary_head_gain_binary_iou": diff("student", "no-binary-head"),
        "detail_branch_gain_binary_iou": diff("student", "no-detail-branch"),
        "student_over_unet_predict_speed": speed_ratio("student", "unet"),
    }


def aggregate_comparisons(per_seed: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-seed comparisons -> (means, [min, max] where more than one seed defines the value).

    Numbers are averaged (undefined ones left out), a yes/no holds only if it holds for every seed,
    anything else (the teacher's name) is the first seed's; nested per-teacher dicts likewise.
    """
    means: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    for key in per_seed[0]:
        values = [d.get(key) for d in per_seed]
        if isinstance(values[0], Mapping):
            means[key], spread[key] = aggregate_comparisons(values)
        elif all(v is None or isinstance(v, bool) for v in values) and any(
            isinstance(v, bool) for v in values
        ):
            means[key], spread[key] = (None if None in values else all(values)), None
        elif all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values):
            mean, low, high = summarize(values)
            means[key] = mean
            spread[key] = [low, high] if sum(v is not None for v in values) > 1 else None
        else:
            means[key], spread[key] = values[0], None
    return means, spread


def _fmt_comparison(mean: Any, spread: Any) -> str:
    """A comparison as the table shows it: ``0.012 (-0.003 to 0.020)`` over seeds, dicts item by item."""
    if isinstance(mean, Mapping):
        inner = (f"{k}: {_fmt_comparison(v, (spread or {}).get(k))}" for k, v in mean.items())
        return "{" + ", ".join(inner) + "}"
    if isinstance(spread, list) and isinstance(mean, float):
        return spread_text(mean, *spread)
    return _fmt(mean)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return _num(value) if isinstance(value, float) else str(value)


def metrics_table(rows: list[Row], classes: list[str]) -> str:
    """The comparison as Markdown (METHODS.md 1.7 columns, then recall, precision and per class);
    every score the mean over training seeds, with its min-max when there are several."""
    head = ["method", "mode", "trained on", "mIoU", "anomaly mIoU", "anomaly F1", "binary IoU"]
    head += ["recall", "precision", *classes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    columns = ["miou", "anomaly_miou", "anomaly_f1", "binary_iou", "binary_recall", "binary_precision"]
    for row in rows:
        cells = [row.method, row.group, row.trained_on]
        cells += [format_spread(row.values(k)) for k in (*columns, *(f"iou_{c}" for c in classes))]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = max(len(r.scores) for r in rows)
    if seeds > 1:
        seed_list = ", ".join(str(s) for s in next(r.seeds for r in rows if len(r.scores) == seeds))
        caption = (
            f"Mean over training seeds {seed_list} (min-max in brackets), all on one split; "
            "teachers do not depend on the training seed."
        )
        lines = [caption, "", *lines]
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
    """Each row's timings, mean over seeds."""
    return [[r.method, *(r.timing.get(k) for k, _ in TIMING_COLUMNS)] for r in rows]


def timing_table(rows: list[Row]) -> str:
    head = ["method", *(label for _, label in TIMING_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_fmt(c) for c in cells) + " |" for cells in timing_rows(rows)]
    return "\n".join(lines)


def _csv(rows: list[Row], classes: list[str]) -> str:
    """One line per row and training seed (teachers: no seed), then a ``mean`` line per row when
    there are several seeds, so the per-seed values stay beside the table's means."""
    columns = ["method", "key", "group", "trained_on", "seed", *SCORES, *(f"iou_{c}" for c in classes)]
    columns += [k for k, _ in TIMING_COLUMNS]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        head = {"method": row.method, "key": row.key, "group": row.group, "trained_on": row.trained_on}
        lines = []
        for score in row.scores:
            values = score.values()
            flat = {**head, "seed": score.seed, **{k: values[k] for k in SCORES}}
            flat.update({f"iou_{c}": values["per_class_iou"].get(c) for c in classes})
            flat.update({k: score.timing.get(k) for k, _ in TIMING_COLUMNS})
            lines.append(flat)
        if len(row.scores) > 1:
            flat = {**head, "seed": "mean", **{k: summarize(row.values(k))[0] for k in SCORES}}
            flat.update({f"iou_{c}": summarize(row.values(f"iou_{c}"))[0] for c in classes})
            flat.update({k: row.timing.get(k) for k, _ in TIMING_COLUMNS})
            lines.append(flat)
        writer.writerows({k: "" if v is None else v for k, v in flat.items()} for flat in lines)
    return text.getvalue()


def _focus(rows: list[Row]) -> str | None:
    """The row whose worst images fill the report's gallery: the box route's student, else the tags
    route's last round."""
    if any(r.key == "student" for r in rows):
        return LABELS["student"]
    rounds = [r for r in rows if r.key.startswith("tags-round") and not r.key.endswith("-gated")]
    return rounds[-1].method if rounds else None


def _write_outputs(
    out: Path,
    config: BenchmarkSettings,
    gt: AnnotationSet,
    test: AnnotationSet,
    rows: list[Row],
    teacher: str,
    fit_scores: dict[str, float | None],
    comparisons: tuple[dict[str, Any], dict[str, Any], dict[int, dict[str, Any]]],
    calls: list[float],
) -> dict[str, Path]:
    from weakseg.evaluation.report import ReportMethod, write_report

    means, spread, per_seed = comparisons
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
        "comparisons": means,
        "comparisons_spread": spread,
        "comparisons_per_seed": {str(s): v for s, v in per_seed.items()},
        "wall_seconds_per_call": calls,
        "wall_seconds_total": sum(calls),
    }
    atomic_write_json(files["json"], doc, indent=2)
    atomic_write_text(files["csv"], _csv(rows, classes))
    text = metrics_table(rows, classes) + "\n\n" + timing_table(rows) + "\n\n"
    text += "\n".join(f"- {k}: {_fmt_comparison(v, spread.get(k))}" for k, v in means.items())
    atomic_write_text(files["table"], text + "\n")

    tag_rounds = [r.key for r in rows if r.key.startswith("tags-round") and not r.key.endswith("-gated")]
    gallery = {f"teacher:{teacher}", *GALLERY_ROWS, "tags:region-cam", *tag_rounds[-1:]}
    methods = [ReportMethod(r.method, r.result, r.masks if r.key in gallery else None, r.group) for r in rows]
    seeds = list(config.seeds)
    notes = [
        (
            f"{len(test.images)} test images ({doc['images']['test_with_defects']} with defects) of "
            f"{len(gt.images)}; seeded split {config.seed}."
            + (
                f" Students learned from the {teacher} teacher (best binary IoU on the train+val defect "
                "images)."
                if teacher
                else ""
            )
            + (
                " The image-tags rows learned from image-level tags only (derived from the masks; "
                "defect-free images as negatives): each CAM teacher's pseudo-masks, then the "
                "self-training rounds."
                if config.supervision and "tags" in config.supervision
                else ""
            )
        ),
        f"Wall time: {sum(calls) / 60:.1f} min over {len(calls)} call(s) (finished rows are reused).",
    ]
    extra = []
    if len(seeds) > 1:
        notes.append(
            f"Training seeds {', '.join(map(str, seeds))}, all on the one split. The metrics table, the "
            f"per-class and recall/precision views and the gallery show seed {seeds[0]}; the table "
            "'Mean over seeds (min-max)' and table.md average the seeds; results.json and results.csv "
            "keep every seed's scores."
        )
        head = ["method", "mIoU", "anomaly mIoU", "anomaly F1", "binary IoU", "recall", "precision"]
        keys = ("miou", "anomaly_miou", "anomaly_f1", "binary_iou", "binary_recall", "binary_precision")
        extra.append(
            (
                "Mean over seeds (min-max)",
                head,
                [[r.method, *(format_spread(r.values(k)) for k in keys)] for r in rows],
            )
        )
    timing_head = ["method", *(label for _, label in TIMING_COLUMNS)]
    extra.append(
        ("Timings (mean over seeds)" if len(seeds) > 1 else "Timings", timing_head, timing_rows(rows))
    )
    files["report"] = write_report(
        out / "report.html",
        title=f"weakseg benchmark: {Path(config.data).name}",
        gt=test,
        methods=methods,
        focus=_focus(rows),
        config=yaml.safe_load(yaml.safe_dump(asdict(config))),
        notes=notes,
        extra_tables=extra,
    )
    return files
