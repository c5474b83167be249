"""Readers: every annotation format an inspection team arrives with, into one :class:`AnnotationSet`.

One registry, one door: :func:`load_annotations` picks the reader by name or detects the format.
Each reader is ``read(path, options, issues) -> AnnotationSet``; it raises :class:`DataError` for
problems that make the whole input unreadable (malformed JSON, no images) and records per-file
problems in ``issues`` so that ``doctor`` can list them all at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from weakseg.annotations.masks import DEFAULT_MIN_AREA
from weakseg.annotations.schema import AnnotationSet
from weakseg.errors import DataError, IssueLog

#: Folder names (case-insensitive, after a shared prefix such as ``MT_`` is stripped) that hold
#: defect-free images in folder-per-class layouts.
DEFAULT_NEGATIVE_NAMES = ("free", "ok", "good", "normal", "negative", "defect_free", "no_defect", "nodefect")


@dataclass(frozen=True)
class ReadOptions:
    """Options shared by the readers; each reader uses the ones that apply to its format."""

    #: Defect class names in id order, for formats that store only numbers (YOLO without data.yaml,
    #: indexed masks without a classes file).
    classes: tuple[str, ...] | None = None
    #: Connected components under this many pixels are dropped when boxes are derived from masks.
    min_area: int = DEFAULT_MIN_AREA
    #: Pixel value -> class name for indexed masks and BSDS ``.mat`` files; unlisted values are background.
    value_map: dict[int, str] | None = None
    #: Folder names that mean "defect-free" in folder-per-class layouts.
    negative_names: tuple[str, ...] = DEFAULT_NEGATIVE_NAMES
    #: Optional CSV of image-level tags merged into any format (columns ``image,tags``); a
    #: ``tags.csv`` in the dataset folder is merged by default.
    tags_csv: Path | None = None
    #: Binarisation threshold for 0/255 masks with soft edges.
    binary_threshold: int = 128


Reader = Callable[[Path, ReadOptions, IssueLog], AnnotationSet]
Detector = Callable[[Path], bool]


@dataclass
class _Entry:
    read: Reader
    detect: Detector
    help: str


_READERS: dict[str, _Entry] = {}
_ORDER: list[str] = []  # detection order: the built-in readers' fixed order, then others as registered
#: Auto-detection order of the built-in readers. Fixed here, not taken from import order: readers import
#: each other's helpers, so which registered first used to depend on what the caller imported first.
BUILTIN_ORDER = ("masks", "bsds", "coco", "tags", "voc", "yolo")


def register_reader(name: str, *, detect: Detector, help: str) -> Callable[[Reader], Reader]:
    def wrap(fn: Reader) -> Reader:
        _READERS[name] = _Entry(fn, detect, help)
        if name not in _ORDER:
            _ORDER.append(name)
            rank = {n: i for i, n in enumerate(BUILTIN_ORDER)}
            _ORDER.sort(key=lambda n: rank.get(n, len(rank)))  # stable: plugins keep their order
        return fn

    return wrap


def reader_names() -> list[str]:
    _load_builtin()
    return list(_ORDER)


def reader_help() -> dict[str, str]:
    _load_builtin()
    return {name: _READERS[name].help for name in _ORDER}


def detect_format(path: str | Path) -> str:
    """Name of the first reader whose detector accepts ``path``."""
    _load_builtin()
    path = Path(path)
    if not path.exists():
        raise DataError(path, "does not exist")
    for name in _ORDER:
        if _READERS[name].detect(path):
            return name
    if path.is_dir():
        from weakseg.annotations.images import iter_images

        n_images = sum(1 for _ in iter_images(path))
        if n_images:
            raise DataError(
                path,
                f"no annotations found for its {n_images} images: expected masks/ or annotations/ beside "
                "images/, per-class folders with masks, a COCO .json, YOLO labels/ or data.yaml, VOC .xml "
                "files or a tags CSV (weakseg list formats); pass --format to name one",
            )
    raise DataError(
        path,
        "cannot tell the annotation format; pass --format with one of: " + ", ".join(_ORDER),
    )


def load_annotations(
    path: str | Path,
    format: str = "auto",
    options: ReadOptions | None = None,
    issues: IssueLog | None = None,
) -> AnnotationSet:
    """Read a dataset in any supported format.

    Per-file problems go into ``issues`` when it is given (so a caller can report them all); without
    it, any error raises.
    """
    _load_builtin()
    path = Path(path)
    options = options or ReadOptions()
    if not path.exists():
        raise DataError(path, "does not exist")
    name = detect_format(path) if format == "auto" else format
    if name not in _READERS:
        raise DataError(path, f"unknown format {name!r}; choose one of: auto, {', '.join(_ORDER)}")
    own_log = issues is None
    log = IssueLog() if own_log else issues
    result = _READERS[name].read(path, options, log)
    result.format = name
    tags_csv = options.tags_csv
    if tags_csv is None and path.is_dir() and (path / "tags.csv").is_file():
        tags_csv = path / "tags.csv"  # a dataset's own tag list, by convention beside its annotations
    if tags_csv is not None and name != "tags":
        from weakseg.annotations.readers.tags import merge_tags_csv

        merge_tags_csv(result, tags_csv, log)
    if not result.images:
        raise DataError(path, f"no images found (read as {name})")
    if own_log:
        log.raise_errors()
    return result


def _load_builtin() -> None:
    # Importing the modules registers them; BUILTIN_ORDER is the auto-detection order.
    from weakseg.annotations.readers import (  # noqa: F401
        bsds,
        coco,
        mask_folder,
        tags,
        voc,
        yolo,
    )
