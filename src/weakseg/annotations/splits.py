"""Seeded, stratified, optionally grouped train/val/test splits, written to a file and reused.

Methods can only be compared on the same images, so a split is made once, saved next to the data
(:func:`save_splits`) and read back by every later run (:func:`splits_for`); an image that the file
does not cover is an error, never a silent change of test set.

How a split is made (:func:`make_splits`):

1. Every image gets a *stratum*, its class signature: the sorted class ids of its instances and tags
   (``"1+3"``), ``"negative"`` for known defect-free images, ``"unlabelled"`` for the rest.
2. Images are gathered into *units*: one per image, or with ``group_by`` one per group (all images
   whose basename yields the same key, e.g. Magnetic Tile's ``exp<k>`` acquisition batch), so a group
   never straddles two splits.
3. Units are placed greedily, biggest first (ties in seeded random order): each goes to the split
   where it most reduces the squared error between the achieved and target counts, summed over its
   strata plus a global term for the split sizes. For single images this is "the split that lacks
   most of this stratum", which reproduces largest-remainder rounding.
4. Coverage repair, where possible (greedy placement of big groups, or rare classes hidden in
   multi-class signatures, can leave holes): every class reaches train, and val and test too once it
   has enough units; every stratum reaches each split where its proportional share is at least one
   image (so in small data sets the largest strata get an image in every split). Splits are served
   largest first, classes before strata; a unit moves only if that does not take the last image of a
   class (or, when a stratum is being repaired, of a stratum) out of a split already served, and the
   smallest such unit moves, so the fractions shift as little as possible. Where no unit may move
   (e.g. a class that lives in a single group), the hole stays: the split is still valid.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from weakseg.annotations.schema import AnnotationSet, ImageRecord
from weakseg.errors import DataError
from weakseg.utils.atomic import atomic_write_json

log = logging.getLogger(__name__)

#: Split names, in the order fractions are given.
SPLITS: tuple[str, str, str] = ("train", "val", "test")
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)
SPLIT_FILE_VERSION = 1
_GLOBAL_WEIGHT = 0.5  # split sizes matter, but less than the per-stratum proportions
_MAX_LISTED = 5


# --------------------------------------------------------------------------- making a split


def make_splits(
    ann: AnnotationSet,
    *,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    group_by: str | None = None,
) -> dict[str, str]:
    """``{file_name: "train" | "val" | "test"}`` for every image of ``ann``.

    ``fractions`` are normalised to sum to one. ``group_by`` is a regular expression searched in each
    file's basename; its first capture group (or the whole match) is the group key, and images without
    a match are groups of their own. The result depends only on the set of images, never their order.
    """
    target = _normalise(fractions)
    records = sorted(ann.images, key=lambda r: r.file_name)
    _check_unique(records)
    if not records:
        return {}
    units = _units(records, group_by)
    unit_strata = [Counter(_signature(r) for r in unit) for unit in units]
    order = _unit_order(units, seed)
    placement = _greedy(order, unit_strata, target)
    _repair(units, placement, target, order)
    return {r.file_name: SPLITS[placement[u]] for u, unit in enumerate(units) for r in unit}


def _normalise(fractions: tuple[float, float, float]) -> np.ndarray:
    values = np.asarray(fractions, dtype=float)
    if values.shape != (3,) or not np.all(np.isfinite(values)) or np.any(values < 0) or values.sum() <= 0:
        raise DataError(
            None, f"split fractions must be three non-negative numbers (train, val, test), got {fractions}"
        )
    return values / values.sum()


def _check_unique(records: list[ImageRecord]) -> None:
    dupes = sorted(name for name, n in Counter(r.file_name for r in records).items() if n > 1)
    if dupes:
        raise DataError(None, f"file names must be unique to be split; repeated: {_listing(dupes)}")


def _signature(record: ImageRecord) -> str:
    """The stratum: sorted class ids, ``"negative"`` (known defect-free) or ``"unlabelled"``."""
    ids = record.class_ids()
    if ids:
        return "+".join(str(i) for i in sorted(ids))
    return "negative" if record.is_negative else "unlabelled"


def _group_key(file_name: str, pattern: re.Pattern[str] | None) -> tuple[str, str]:
    """Group of a file; a file without a match is its own group (namespaced so keys cannot collide)."""
    if pattern is not None:
        match = pattern.search(PurePosixPath(file_name).name)
        if match is not None:
            key = match.group(1) if pattern.groups and match.group(1) is not None else match.group(0)
            return ("group", key)
    return ("file", file_name)


def _units(records: list[ImageRecord], group_by: str | None) -> list[list[ImageRecord]]:
    try:
        pattern = re.compile(group_by) if group_by else None
    except re.error as exc:
        raise DataError(None, f"group_by {group_by!r} is not a valid regular expression: {exc}") from None
    groups: dict[tuple[str, str], list[ImageRecord]] = defaultdict(list)
    for record in records:
        groups[_group_key(record.file_name, pattern)].append(record)
    return [groups[key] for key in sorted(groups)]


def _unit_order(units: list[list[ImageRecord]], seed: int) -> list[int]:
    """Biggest units first (they are the hardest to fit); equal sizes in seeded random order."""
    shuffled = np.random.default_rng(seed).permutation(len(units)).tolist()
    return sorted(shuffled, key=lambda u: -len(units[u]))


class _Tally:
    """Images per (label, split) and per split, against their targets; a label is a stratum or class."""

    def __init__(self, unit_labels: list[Counter[str]], target: np.ndarray) -> None:
        totals: Counter[str] = Counter()
        for labels in unit_labels:
            totals.update(labels)
        self.totals = totals
        self.target = target
        self.count: dict[str, np.ndarray] = {s: np.zeros(3) for s in totals}
        self.split_count = np.zeros(3)
        self.grand_total = sum(totals.values())

    def add(self, labels: Counter[str], split: int, sign: int = 1) -> None:
        for label, n in labels.items():
            self.count[label][split] += sign * n
            self.split_count[split] += sign * n

    def cost_of_adding(self, strata: Counter[str], split: int) -> float:
        """Increase of the squared count error if ``strata`` joined ``split``."""
        cost = 0.0
        for stratum, n in strata.items():
            gap = self.count[stratum][split] - self.totals[stratum] * self.target[split]
            cost += n * (n + 2 * gap)
        size = sum(strata.values())
        gap = self.split_count[split] - self.grand_total * self.target[split]
        return cost + _GLOBAL_WEIGHT * size * (size + 2 * gap)


def _greedy(order: list[int], unit_strata: list[Counter[str]], target: np.ndarray) -> dict[int, int]:
    """Place each unit where it adds least squared error (see the module docstring)."""
    tally = _Tally(unit_strata, target)
    open_splits = [s for s in range(3) if target[s] > 0]
    by_fraction = {s: -target[s] for s in open_splits}  # ties go to the larger split
    placement: dict[int, int] = {}
    for u in order:
        best = min(
            open_splits, key=lambda s: (round(tally.cost_of_adding(unit_strata[u], s), 9), by_fraction[s], s)
        )
        placement[u] = best
        tally.add(unit_strata[u], best)
    return placement


def _coverage_labels(unit: list[ImageRecord]) -> Counter[str]:
    """What coverage is checked for: each image's stratum, and each class it shows."""
    labels = Counter(f"stratum:{_signature(r)}" for r in unit)
    labels.update(f"class:{c}" for r in unit for c in sorted(r.class_ids()))
    return labels


def _by_size(target: np.ndarray) -> list[int]:
    """Non-empty splits, largest first (ties in train, val, test order)."""
    return sorted((s for s in range(3) if target[s] > 0), key=lambda s: (-target[s], s))


def _required_splits(label: str, n_units: int, target: np.ndarray) -> set[int]:
    """Splits a label must reach, where it can.

    A class reaches as many splits as it has units, largest first: train always, so every class is
    trained on, and val and test as soon as it can, so it can be scored there. A stratum reaches a
    split when its proportional share there is at least one whole image: in small data sets that
    singles out the largest strata, while tiny multi-class signatures keep plain rounding instead of
    all being pushed into val and test (which would skew the fractions).
    """
    ranked = _by_size(target)
    if label.startswith("class:"):
        return set(ranked[: min(n_units, len(ranked))])
    return {s for s in ranked if n_units * target[s] >= 1.0}


def _repair(
    units: list[list[ImageRecord]], placement: dict[int, int], target: np.ndarray, order: list[int]
) -> None:
    """Move units (in place in ``placement``) until every label reaches the splits it requires.

    Splits are served largest first, and a move never takes the last image of a label out of a split
    served before, so training coverage outranks val coverage, which outranks test coverage. Within a
    split, classes come before strata and may take a stratum's last image (being able to score a
    class matters more than a perfectly stratified signature); strata must leave classes alone.
    """
    unit_labels = [_coverage_labels(unit) for unit in units]
    tally = _Tally(unit_labels, target)
    for u, split in placement.items():
        tally.add(unit_labels[u], split)
    holders: dict[str, list[int]] = defaultdict(list)
    for u in order:
        for label in unit_labels[u]:
            holders[label].append(u)
    required = {label: _required_splits(label, len(us), target) for label, us in holders.items()}
    labels = sorted(holders, key=lambda lab: (not lab.startswith("class:"), -tally.totals[lab], lab))
    served: set[int] = set()
    for split in _by_size(target):
        served.add(split)
        for label in labels:
            if split not in required[label] or tally.count[label][split] > 0:
                continue
            is_class = label.startswith("class:")
            protected = {
                lab: req & served if (lab.startswith("class:") or not is_class) else set()
                for lab, req in required.items()
            }
            unit = _movable_unit(label, holders[label], unit_labels, placement, tally, protected, split)
            if unit is not None:
                tally.add(unit_labels[unit], placement[unit], sign=-1)
                placement[unit] = split
                tally.add(unit_labels[unit], split)


def _movable_unit(
    label: str,
    candidates: list[int],
    unit_labels: list[Counter[str]],
    placement: dict[int, int],
    tally: _Tally,
    protected: dict[str, set[int]],
    split: int,
) -> int | None:
    """The unit to move into ``split`` for ``label``.

    It must not starve a label its split has to keep; among the rest, the smallest unit, taken from
    the split holding most of ``label`` (so the donor keeps its own copy).
    """
    best: tuple[int, float, int] | None = None
    for rank, u in enumerate(candidates):
        source = placement[u]
        if source == split:
            continue
        starves = any(
            source in protected[lab] and tally.count[lab][source] - n <= 0
            for lab, n in unit_labels[u].items()
        )
        if starves:
            continue
        size = sum(n for lab, n in unit_labels[u].items() if lab.startswith("stratum:"))
        key = (size, -tally.count[label][source], rank)
        if best is None or key < best:
            best = key
    return None if best is None else candidates[best[2]]


# --------------------------------------------------------------------------- the split file


def save_splits(splits: Mapping[str, str], path: str | Path, *, meta: Mapping[str, Any]) -> None:
    """Write the split file atomically, with what made it (seed, fractions, group_by) and the counts."""
    bad = sorted(name for name, split in splits.items() if split not in SPLITS)
    if bad:
        raise DataError(path, f"unknown split name for {_listing(bad)} (expected one of {', '.join(SPLITS)})")
    extra = {k: v for k, v in meta.items() if k not in {"version", "counts", "splits"}}
    fractions = meta.get("fractions")
    counts = Counter(splits.values())
    doc = {
        "version": SPLIT_FILE_VERSION,
        **extra,
        "seed": meta.get("seed"),
        "fractions": None if fractions is None else [float(f) for f in fractions],
        "group_by": meta.get("group_by"),
        "counts": {s: counts.get(s, 0) for s in SPLITS},
        "splits": {name: splits[name] for name in sorted(splits)},
    }
    atomic_write_json(path, doc, indent=2)


def load_splits(path: str | Path) -> dict[str, str]:
    """Read a split file written by :func:`save_splits`; every problem names the file."""
    doc = _read_split_doc(path)
    table = doc.get("splits")
    if not isinstance(table, dict):
        raise DataError(path, "split file has no 'splits' object mapping file names to train/val/test")
    bad = sorted(str(name) for name, split in table.items() if split not in SPLITS)
    if bad:
        raise DataError(path, f"unknown split name for {_listing(bad)} (expected one of {', '.join(SPLITS)})")
    return {str(name): str(split) for name, split in table.items()}


def _read_split_doc(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "split file not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"split file is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DataError(path, "split file must hold a JSON object")
    if doc.get("version") != SPLIT_FILE_VERSION:
        raise DataError(
            path, f"unsupported split file version {doc.get('version')!r} (expected {SPLIT_FILE_VERSION})"
        )
    return doc


def apply_splits(
    ann: AnnotationSet, splits: Mapping[str, str], *, strict: bool = True, source: str | Path | None = None
) -> list[str]:
    """Set ``ImageRecord.split`` from ``splits``; returns the file names it does not cover.

    With ``strict`` an uncovered image is an error, because comparing methods on different images is
    worse than stopping. ``source`` (the split file) is named in that error.
    """
    bad = sorted(name for name, split in splits.items() if split not in SPLITS)
    if bad:
        raise DataError(
            source, f"unknown split name for {_listing(bad)} (expected one of {', '.join(SPLITS)})"
        )
    missing = sorted(r.file_name for r in ann.images if r.file_name not in splits)
    if missing and strict:
        raise DataError(source, _missing_message(missing))
    for record in ann.images:
        record.split = splits.get(record.file_name)
    return missing


def splits_for(
    ann: AnnotationSet, path: str | Path, *, user_file: str | Path | None = None, **make_kwargs: Any
) -> dict[str, str]:
    """The split of ``ann`` stored at ``path``, chosen (see :func:`choose_splits`) and saved on first use.

    An existing file always wins, so every method (and a resumed run) sees the same images;
    ``make_kwargs`` that differ from what the file records are reported in the log, not applied. A file
    that does not cover every image of ``ann`` is an error: delete it to make a new split.
    """
    path = Path(path)
    if path.exists():
        splits = load_splits(path)
        missing = sorted(r.file_name for r in ann.images if r.file_name not in splits)
        if missing:
            raise DataError(path, _missing_message(missing) + "; delete the file to make a new split")
        if user_file is not None:
            names = {r.file_name for r in ann.images}
            wanted = {k: v for k, v in read_user_splits(user_file).items() if k in names}
            if wanted != {k: v for k, v in splits.items() if k in names}:
                raise DataError(path, f"holds another split than {user_file}; pick a new output folder")
        _warn_if_different(path, make_kwargs)
        return splits
    splits, meta = choose_splits(ann, user_file=user_file, **make_kwargs)
    save_splits(splits, path, meta=meta)
    return splits


def split_source(path: str | Path) -> str:
    """Where the split stored at ``path`` came from, in words (files from before this was recorded: made
    by weakseg)."""
    return str(_read_split_doc(path).get("source") or "made by weakseg (seeded, stratified)")


def choose_splits(
    ann: AnnotationSet, *, user_file: str | Path | None = None, **make_kwargs: Any
) -> tuple[dict[str, str], dict[str, Any]]:
    """The split a new run uses, and where it came from (``meta["source"]``), most explicit first:

    1. ``user_file`` (``--splits``), which must cover every image;
    2. the split the dataset declares (:func:`declared_splits`), with a seeded val (or test) split
       carved from its train images when it declares none, so an official test set is never trained on;
    3. a seeded, stratified split of the whole set (:func:`make_splits`).
    """
    meta: dict[str, Any] = {
        "seed": make_kwargs.get("seed", 0),
        "fractions": list(make_kwargs.get("fractions", DEFAULT_FRACTIONS)),
        "group_by": make_kwargs.get("group_by"),
    }
    if user_file is not None:
        splits = read_user_splits(user_file)
        missing = sorted(r.file_name for r in ann.images if r.file_name not in splits)
        if missing:
            raise DataError(user_file, _missing_message(missing))
        names = {r.file_name for r in ann.images}
        splits = {name: split for name, split in splits.items() if name in names}
        return splits, {**meta, "source": f"file {Path(user_file).resolve()}", "fractions": None}
    declared = declared_splits(ann)
    if declared is None:
        return make_splits(ann, **make_kwargs), {**meta, "source": "made by weakseg (seeded, stratified)"}
    splits, carved = carve_missing(ann, declared, **make_kwargs)
    source = "declared by the dataset"
    if carved:
        source += f" ({' and '.join(carved)} carved from train, seeded)"
    return splits, {**meta, "source": source, "carved": carved}


#: Folder names (and reader split names) that declare a split, lower case.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def declared_split(record: ImageRecord) -> str | None:
    """The split a record's dataset declares for it: the reader's (a COCO file per split, YOLO
    ``data.yaml``, VOC ``ImageSets``), else the deepest split-named folder in its path."""
    if record.split:
        return SPLIT_ALIASES.get(record.split.lower())
    for part in reversed(PurePosixPath(record.file_name).parts[:-1]):
        split = SPLIT_ALIASES.get(part.lower())
        if split is not None:
            return split
    return None


def declared_splits(ann: AnnotationSet) -> dict[str, str] | None:
    """``{file_name: split}`` where the dataset declares its splits, ``None`` where it declares none.

    A dataset that declares splits for some images only is an error: guessing where the others belong
    could put official test images into training.
    """
    found = {r.file_name: declared_split(r) for r in ann.images}
    if not any(found.values()):
        return None
    loose = sorted(name for name, split in found.items() if split is None)
    if loose:
        raise DataError(
            ann.root,
            f"the dataset declares train/val/test folders, but {_listing(loose)} ({len(loose)} image(s)) "
            "sit in none of them; move them, or pass --splits FILE",
        )
    if "train" not in found.values():
        raise DataError(ann.root, "the dataset declares splits but no train split (train/ or training/)")
    return {name: split for name, split in found.items() if split is not None}


def carve_missing(
    ann: AnnotationSet, declared: Mapping[str, str], **make_kwargs: Any
) -> tuple[dict[str, str], list[str]]:
    """``declared`` with a seeded, stratified val and/or test split carved from its train images where
    the dataset declares none (at the usual fractions of the whole set); returns the splits carved."""
    splits = dict(declared)
    present = set(declared.values())
    carved = [s for s in ("val", "test") if s not in present]
    if not carved:
        return splits, []
    fractions = _normalise(make_kwargs.pop("fractions", DEFAULT_FRACTIONS))
    share = (
        fractions[0],
        fractions[1] if "val" in carved else 0.0,
        fractions[2] if "test" in carved else 0.0,
    )
    pool = AnnotationSet(
        ann.root, ann.class_map, [r for r in ann.images if declared.get(r.file_name) == "train"], ann.format
    )
    splits.update(make_splits(pool, fractions=share, **make_kwargs))
    return splits, carved


def read_user_splits(path: str | Path) -> dict[str, str]:
    """A split file given by the user: weakseg's own JSON, a JSON object ``{file_name: split}``, or text
    / CSV lines ``file_name,split`` (or ``file_name split``); split names as in :data:`SPLIT_ALIASES`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "split file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"split file is not UTF-8 text: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"split file is not valid JSON: {exc}") from None
        if isinstance(doc, dict) and isinstance(doc.get("splits"), dict):
            doc = doc["splits"]
        if not isinstance(doc, dict):
            raise DataError(path, "a JSON split file must map file names to train/val/test")
        pairs = [(str(k), str(v), f"key {k!r}") for k, v in doc.items()]
    else:
        pairs = []
        for number, line in enumerate(text.splitlines(), start=1):
            fields = [f.strip() for f in re.split(r"[,\t]|\s+(?=\S+$)", line.strip()) if f.strip()]
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) != 2:
                raise DataError(path, f"line {number}: expected 'file_name,split', got {line.strip()!r}")
            if number == 1 and fields[1].lower() == "split":
                continue  # a CSV header
            pairs.append((fields[0], fields[1], f"line {number}"))
    splits: dict[str, str] = {}
    for name, value, where in pairs:
        split = SPLIT_ALIASES.get(value.strip().lower())
        if split is None:
            raise DataError(path, f"{where}: unknown split {value!r} (expected train, val or test)")
        if splits.setdefault(name, split) != split:
            raise DataError(path, f"{where}: {name} is listed in two splits")
    if not splits:
        raise DataError(path, "split file lists no images")
    return splits


def _warn_if_different(path: Path, make_kwargs: Mapping[str, Any]) -> None:
    stored = _read_split_doc(path)
    for key, value in make_kwargs.items():
        if key == "fractions" and stored.get(key) is not None:
            same = len(stored[key]) == len(value) and all(
                math.isclose(a, b) for a, b in zip(stored[key], value, strict=False)
            )
        else:
            same = stored.get(key) == value
        if not same:
            log.warning(
                "%s: reusing the stored split (%s=%r); requested %s=%r is ignored",
                path,
                key,
                stored.get(key),
                key,
                value,
            )


def _missing_message(missing: list[str]) -> str:
    return f"{len(missing)} image(s) are not in the split file: {_listing(missing)}"


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")
