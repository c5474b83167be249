"""``weakseg pseudo-label``: run a teacher over a dataset shard, writing as it goes.

Each image's masks are written the moment they exist, then its manifest line; a restart skips what is
finished; an image that fails is recorded with its error and skipped. With ``workers > 1`` the teacher
runs in a process pool while this process alone writes, so there is never a race on the store.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from weakseg.annotations import masks as mask_ops
from weakseg.annotations.images import read_image, resolve_inside
from weakseg.annotations.readers import ReadOptions, load_annotations
from weakseg.annotations.schema import AnnotationSet, ImageRecord, pseudo_origin
from weakseg.annotations.validate import validate
from weakseg.errors import DataError, DataErrors, IssueLog
from weakseg.pseudolabel.sharding import Shard, resolve_shard
from weakseg.pseudolabel.store import ManifestEntry, PseudoStore
from weakseg.teachers.base import Teacher, create_teacher
from weakseg.teachers.refine import RefineConfig
from weakseg.utils.hashing import stable_hash

#: Testing aid: seconds to sleep per image, so a test can kill the job mid-run. Never set in use.
_DELAY_ENV = "WEAKSEG_PSEUDO_ITEM_DELAY"


@dataclass
class PseudoLabelResult:
    store: Path
    shard: Shard
    processed: int  # images labelled in this call
    skipped: int  # already finished before this call
    failed: int
    seconds: float
    merged: Path | None
    summary: dict[str, Any] = field(default_factory=dict)
    invalid: list[str] = field(default_factory=list)  # the problems of the images left out (skip_invalid)
    invalid_images: int = 0  # how many images they are
    failures: list[str] = field(default_factory=list)  # "file: error" of every image the teacher failed on

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


def pseudo_label(
    data: str | Path | AnnotationSet,
    teacher: str = "contrast",
    out: str | Path = "pseudo",
    *,
    teacher_config: dict[str, Any] | None = None,
    format: str = "auto",
    options: ReadOptions | None = None,
    refine: RefineConfig | None = None,
    keep_gt_masks: bool = False,
    workers: int = 1,
    shard: int | None = None,
    num_shards: int | None = None,
    merge: bool = True,
    skip_invalid: bool = False,
    checked: bool = False,
    console: Console | None = None,
) -> PseudoLabelResult:
    """Label every box of ``data`` (this shard's part) with ``teacher`` into the store at ``out``.

    ``keep_gt_masks`` passes human masks through unchanged (mixed supervision); by default every box
    gets a teacher mask, which is what an audit against those human masks needs.

    A dataset read from disk is checked first with ``weakseg doctor``'s rules (a box outside its image,
    a mask of another size, an unreadable file, ...): any error stops the job before anything is
    written, naming every file, unless ``skip_invalid``, which leaves exactly those images out and
    lists them in the result's ``invalid``. ``checked`` skips that check for a caller that made it
    already (:func:`checked_annotations`) and labels the same data with several teachers.
    """
    console = console or Console(stderr=True)
    invalid: list[str] = []
    invalid_images = 0
    if isinstance(data, AnnotationSet):
        ann = data
    elif checked:
        ann = load_annotations(data, format, options)
    else:
        ann, invalid, invalid_images = checked_annotations(data, format, options, skip_invalid)
        for issue in invalid:
            console.print(f"[yellow]skipped: {issue}[/yellow]", highlight=False)
    the_teacher = create_teacher(teacher, **(teacher_config or {}))
    refine = refine or RefineConfig()
    the_shard = resolve_shard(shard, num_shards)
    store = PseudoStore(out)
    config_hash = _run_hash(the_teacher, refine, keep_gt_masks)
    store.open(
        {
            "teacher": the_teacher.name,
            "config": the_teacher.config(),
            "refine": asdict(refine),
            "keep_gt_masks": keep_gt_masks,
            "config_hash": config_hash,
            "class_map": ann.class_map.to_dict(),
            "data": str(ann.root.resolve() if isinstance(data, AnnotationSet) else Path(data).resolve()),
            "format": ann.format,
        }
    )
    done = store.finished(config_hash)
    mine = sorted((r for r in ann.images if the_shard.owns(r.file_name)), key=lambda r: r.file_name)
    todo = [r for r in mine if r.file_name not in done]
    job = _Job(the_teacher, refine, keep_gt_masks, config_hash, ann.root)

    start = time.perf_counter()
    failures: list[str] = []
    with store.appender(the_shard.tag) as manifest, _progress(console) as progress:
        task = progress.add_task("label", total=len(todo))
        for item, entry in _results(job, todo, workers):
            if item is not None:
                store.write_item(item)
            store.append(manifest, entry)
            if entry.status != "ok":
                failures.append(f"{ann.root / entry.file_name}: {entry.error}")
            progress.advance(task)
    seconds = time.perf_counter() - start

    merged = None
    summary: dict[str, Any] = {}
    if merge:
        # One scan of the manifests serves both the "is every shard done?" check and the merge.
        finished = store.finished(config_hash)
        if all(r.file_name in finished for r in ann.images):
            summary = store.merge(ann, config_hash, finished=finished)
            merged = store.merged_path
    return PseudoLabelResult(
        store.path,
        the_shard,
        len(todo),
        len(mine) - len(todo),
        len(failures),
        seconds,
        merged,
        summary,
        invalid,
        invalid_images,
        failures,
    )


def checked_annotations(
    data: str | Path, format: str = "auto", options: ReadOptions | None = None, skip_invalid: bool = False
) -> tuple[AnnotationSet, list[str], int]:
    """The dataset with doctor's errors refused, or (``skip_invalid``) left out: the kept set, every
    problem, and how many images they concern.

    It decodes every image; a caller labelling one dataset with several teachers checks it once here
    and then calls :func:`pseudo_label` with ``checked=True`` for each."""
    issues = IssueLog()
    ann = load_annotations(data, format, options, issues)  # the reader leaves unreadable records out
    read_errors = {e.path for e in issues.errors}
    bad = validate(ann, issues, decode_images=True)  # doctor's rules, truncated files included
    errors = issues.errors
    if errors and not skip_invalid:
        raise DataErrors(errors)
    # A reader may keep a record whose own label file it rejected (a mask PNG of another size).
    sources = Counter(r.source for r in ann.images)
    rejected = {path for path in read_errors if sources.get(path) == 1}
    kept = [r for r in ann.images if r.file_name not in bad and r.source not in rejected]
    dropped_by_reader = len(read_errors - set(sources))  # records the reader left out altogether
    kept_set = AnnotationSet(ann.root, ann.class_map, kept, ann.format)
    return kept_set, [e.text() for e in errors], len(ann.images) - len(kept) + dropped_by_reader


def merge_store(
    data: str | Path, out: str | Path, *, format: str = "auto", options: ReadOptions | None = None
) -> dict:
    """Merge a store whose shards were run separately (every shard must be finished)."""
    store = PseudoStore(out)
    meta = store.meta()
    ann = load_annotations(data, format, options)
    return store.merge(ann, meta["config_hash"])


def _run_hash(teacher: Teacher, refine: RefineConfig, keep_gt_masks: bool) -> str:
    return stable_hash(
        {"teacher": teacher.config(), "refine": asdict(refine), "keep_gt_masks": keep_gt_masks}
    )


@dataclass
class _Job:
    """Everything a worker needs to label one image (picklable)."""

    teacher: Teacher
    refine: RefineConfig
    keep_gt_masks: bool
    config_hash: str
    root: Path

    def __call__(self, record: ImageRecord) -> tuple[dict[str, Any] | None, ManifestEntry]:
        delay = float(os.environ.get(_DELAY_ENV, "0") or 0)
        if delay:
            time.sleep(delay)
        try:
            item = self._label(record)
        except Exception as exc:
            detail = (
                str(exc)
                if isinstance(exc, DataError)
                else "".join(traceback.format_exception_only(exc)).strip()
            )
            return None, ManifestEntry(record.file_name, "failed", self.config_hash, error=detail)
        masks = [i for i in item["instances"] if not i.get("crowd")]  # crowd: a tag teacher's ignore region
        qualities = [i["score"] for i in masks if i["origin"].startswith("pseudo:")]
        entry = ManifestEntry(
            record.file_name,
            "ok",
            self.config_hash,
            instances=len(masks),
            empty=sum(bool(i.get("empty")) for i in masks),
            quality=float(np.mean(qualities)) if qualities else None,
        )
        return item, entry

    def _label(self, record: ImageRecord) -> dict[str, Any]:
        item: dict[str, Any] = {
            "file_name": record.file_name,
            "width": record.width,
            "height": record.height,
            "annotated": record.annotated,
            "tags": list(record.tags) if record.tags is not None else None,
            "split": record.split,
            "instances": [],
        }
        if self.teacher.supervision == "tags":
            return self._label_tags(record, item)
        to_label = [i for i in record.instances if not (self.keep_gt_masks and i.mask is not None)]
        kept = [i for i in record.instances if self.keep_gt_masks and i.mask is not None]
        for inst in kept:
            item["instances"].append(_instance_dict(inst.class_id, inst.box, inst.mask, inst.origin, 1.0))
        if not to_label:
            return item
        image = self._image(record)
        boxes = np.array([i.box for i in to_label], dtype=float)
        class_ids = np.array([i.class_id for i in to_label])
        origin = pseudo_origin(self.teacher.name)
        for inst, pm in zip(to_label, self.teacher.label(image, boxes, class_ids, self.refine), strict=True):
            d = _instance_dict(inst.class_id, inst.box, mask_ops.encode(pm.mask), origin, pm.quality)
            d.update(confidence=pm.confidence, fill_ratio=pm.fill_ratio, box_iou=pm.box_iou, empty=pm.empty)
            item["instances"].append(d)
        return item

    def _image(self, record: ImageRecord) -> np.ndarray:
        path = resolve_inside(self.root, record.file_name)
        image = read_image(path)
        if image.shape[:2] != record.size:
            raise DataError(
                path,
                f"image is {image.shape[1]}x{image.shape[0]}, annotation says {record.width}x{record.height}",
            )
        return image

    def _label_tags(self, record: ImageRecord, item: dict[str, Any]) -> dict[str, Any]:
        """A tag teacher's masks: the record's own instances are never copied (they may be the human
        masks the tags were derived from). Per tagged class, the defect mask (an instance with its
        tight box) and the undecided pixels (a crowd instance: COCO's "ignore this region"); a
        defect-free image is annotated with nothing, every pixel background; an image whose tags are
        unknown stays unannotated."""
        tags = record.image_tags
        item["tags"] = list(tags) if tags is not None else None
        item["annotated"] = tags is not None
        if not tags:
            return item
        origin = pseudo_origin(self.teacher.name)
        for tm in self.teacher.label_tags(self._image(record), tags):  # type: ignore[attr-defined]
            box = mask_ops.box_of(tm.mask) or (0.0, 0.0, float(record.width), float(record.height))
            d = _instance_dict(tm.class_id, box, mask_ops.encode(tm.mask), origin, tm.quality)
            d.update(confidence=tm.confidence, empty=not tm.mask.any())
            item["instances"].append(d)
            if tm.ignore.any():
                ignore = _instance_dict(
                    tm.class_id, mask_ops.box_of(tm.ignore), mask_ops.encode(tm.ignore), origin, tm.quality
                )
                ignore["crowd"] = True
                item["instances"].append(ignore)
        return item


def _instance_dict(class_id: int, box: Any, mask: Any, origin: str, score: float) -> dict[str, Any]:
    return {
        "class_id": int(class_id),
        "box": [float(v) for v in box],
        "mask": mask,
        "area": mask_ops.area(mask) if mask is not None else 0,
        "origin": origin,
        "score": round(float(score), 6),
    }


_WORKER_JOB: _Job | None = None


def _init_worker(job: _Job) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job
    try:
        import cv2

        cv2.setNumThreads(1)  # one process per core already; nested threads only contend
    except ImportError:  # pragma: no cover
        pass


def _run_in_worker(record: ImageRecord) -> tuple[dict[str, Any] | None, ManifestEntry]:
    assert _WORKER_JOB is not None
    return _WORKER_JOB(record)


def _results(
    job: _Job, records: list[ImageRecord], workers: int
) -> Iterator[tuple[dict | None, ManifestEntry]]:
    """Results in input order; a bounded pool keeps memory flat however many images there are."""
    if workers <= 1 or len(records) <= 1:
        for record in records:
            yield job(record)
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(job,)) as pool:
        yield from pool.imap(_run_in_worker, records, chunksize=1)


class _RateColumn(ProgressColumn):
    """Images per second, from rich's own moving estimate."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f} img/s" if task.speed else "")


def _progress(console: Console) -> Progress:
    """A progress bar with images/s and ETA (drawn only on a terminal)."""
    return Progress(
        TextColumn("[bold]pseudo-label"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )
