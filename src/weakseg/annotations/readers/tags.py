"""Image-level tags: the cheapest supervision, "this image shows a crack" without saying where.

Read from a CSV (``image,tags``; also ``image,label`` / ``file,label``, one row per image or per
image-and-tag) or from a folder per class holding only images. Tagged images are *unannotated*
(``annotated=False``): a tag says a defect is present, not where, so their empty instance lists prove
nothing. Images tagged defect-free (empty cell, or a name such as ``ok``/``good``) are the exception:
they are annotated negatives with ``tags=()``, because "no defect" is a complete annotation.

:func:`merge_tags_csv` adds such a CSV to a dataset read in any other format.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from weakseg.annotations.images import image_size, relative_name, resolve_inside
from weakseg.annotations.readers import DEFAULT_NEGATIVE_NAMES, ReadOptions, register_reader
from weakseg.annotations.readers.mask_folder import (
    class_folders,
    has_mask_beside,
    mask_dir,
    pair_beside,
    walk_files,
)
from weakseg.annotations.schema import AnnotationSet, ClassMap, ImageRecord
from weakseg.errors import DataError, IssueLog

IMAGE_COLUMNS = ("image", "file", "file_name", "filename", "path")
TAG_COLUMNS = ("tags", "label", "labels", "tag")
_TAG_SEPARATOR = re.compile(r"[;|]")


@dataclass(frozen=True)
class TagRow:
    """One CSV row: where it is, which image, and its defect tags (``()`` = defect-free)."""

    line: int
    image: str
    tags: tuple[str, ...]
    negative: bool


# --------------------------------------------------------------------------------------------------
# CSV parsing
# --------------------------------------------------------------------------------------------------


def _column(header: list[str], candidates: tuple[str, ...]) -> int | None:
    for name in candidates:
        if name in header:
            return header.index(name)
    return None


def _split_tags(cell: str, negatives: set[str]) -> tuple[tuple[str, ...], bool, list[str]]:
    """``(defect tags, says defect-free, negative words)`` of one tags cell."""
    parts = [p.strip() for p in _TAG_SEPARATOR.split(cell) if p.strip()]
    neg_words = [p for p in parts if p.lower() in negatives]
    defects = tuple(dict.fromkeys(p for p in parts if p.lower() not in negatives))
    return defects, not defects, neg_words


def read_tag_rows(csv_path: Path, negative_names: Iterable[str], issues: IssueLog) -> list[TagRow]:
    """Parse a tags CSV; a file without a header naming the image column is unusable and raises."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            # line_num is where the row ends, as a text editor shows it
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(csv_path, f"cannot read the tags CSV: {exc}") from None
    if not rows:
        raise DataError(csv_path, "is empty; expected a header such as 'image,tags'")
    header = [h.strip().lower() for h in rows[0][1]]
    image_col = _column(header, IMAGE_COLUMNS)
    if image_col is None:
        raise DataError(
            csv_path, f"no image column in the header {rows[0][1]}; expected a header such as 'image,tags'"
        )
    tag_col = _column(header, TAG_COLUMNS)
    negatives = {n.lower() for n in negative_names}
    out = []
    for line, row in rows[1:]:
        if not any(cell.strip() for cell in row):
            continue
        image = row[image_col].strip().replace("\\", "/") if image_col < len(row) else ""
        if not image:
            issues.error(csv_path, f"line {line}: no image name")
            continue
        cell = row[tag_col] if tag_col is not None and tag_col < len(row) else ""
        tags, negative, neg_words = _split_tags(cell, negatives)
        if tags and neg_words:
            issues.error(
                csv_path, f"line {line}: {image} is tagged both defect-free ({neg_words[0]}) and {tags[0]}"
            )
        out.append(TagRow(line, image, tags, negative))
    return out


def _merged(rows: list[TagRow]) -> dict[str, TagRow]:
    """One row per image: several rows for one image (``file,label`` style) add up their tags."""
    out: dict[str, TagRow] = {}
    for row in rows:
        prev = out.get(row.image)
        if prev is None:
            out[row.image] = row
            continue
        tags = tuple(dict.fromkeys(prev.tags + row.tags))
        out[row.image] = TagRow(prev.line, row.image, tags, not tags)
    return out


# --------------------------------------------------------------------------------------------------
# Reading a CSV or a folder per class
# --------------------------------------------------------------------------------------------------


def _csv_root(csv_path: Path, names: Iterable[str]) -> Path:
    """The CSV's folder, or ``images/`` beside it when that is where more of the listed images are."""
    here = csv_path.parent
    below = here / "images"
    if not below.is_dir():
        return here
    names = list(names)
    hits_here = sum((here / n).is_file() for n in names)
    hits_below = sum((below / n).is_file() for n in names)
    return below if hits_below > hits_here else here


def _tagged_record(root: Path, file_name: str, source: str, issues: IssueLog) -> ImageRecord | None:
    try:
        image = resolve_inside(root, file_name, source=source)
        width, height = image_size(image)
    except DataError as exc:
        issues.add(exc)
        return None
    return ImageRecord(relative_name(image, root), width, height, annotated=False, source=source)


def _apply(record: ImageRecord, tag_ids: tuple[int, ...], negative: bool) -> None:
    if negative:
        record.tags = ()
        record.annotated = True
    else:
        record.tags = tuple(sorted(tag_ids))


def _read_csv(csv_path: Path, options: ReadOptions, issues: IssueLog) -> AnnotationSet:
    rows = _merged(read_tag_rows(csv_path, options.negative_names, issues))
    root = _csv_root(csv_path, rows)
    class_map = ClassMap(tuple(sorted({t for row in rows.values() for t in row.tags})))
    records = []
    for row in rows.values():
        record = _tagged_record(root, row.image, str(csv_path), issues)
        if record is not None:
            _apply(record, tuple(class_map.id(t) for t in row.tags), row.negative)
            records.append(record)
    return AnnotationSet(root, class_map, records, "tags")


def _read_folders(data: Path, options: ReadOptions, issues: IssueLog) -> AnnotationSet:
    folders = class_folders(data, options.negative_names)
    if not folders:
        raise DataError(data, "no sub-folders with images (expected one folder per class)")
    class_map = ClassMap(tuple(sorted({f.name for f in folders if not f.negative})))
    records = []
    for folder in folders:
        tag_ids = () if folder.negative else (class_map.id(folder.name),)
        for directory, names in walk_files(folder.path):
            pairs, _ = pair_beside(directory, names)  # masks beside images are not images
            for image, _mask in pairs:
                record = _tagged_record(data, relative_name(image, data), str(folder.path), issues)
                if record is not None:
                    _apply(record, tag_ids, folder.negative)
                    records.append(record)
    records.sort(key=lambda r: r.file_name)
    return AnnotationSet(data, class_map, records, "tags")


def _only_images(folder: Path) -> bool:
    """True when every visible file below ``folder`` is an image and none is a mask beside an image."""
    for directory, names in walk_files(folder):
        pairs, orphans = pair_beside(directory, names)
        if orphans or len(pairs) != len(names) or any(mask for _, mask in pairs):
            return False
    return True


def _detect(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() == ".csv"
    if not path.is_dir() or mask_dir(path) is not None or has_mask_beside(path):
        return False
    subs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(class_folders(path, ())) < 2:
        return False
    return all(_only_images(sub) for sub in subs)


@register_reader(
    "tags",
    detect=_detect,
    help="image-level tags: a CSV (image,tags) or one folder of images per class ('ok'/'good' = defect-free)",
)
def read_tags(path: Path, options: ReadOptions, issues: IssueLog) -> AnnotationSet:
    """Tag-only images (unannotated) plus known defect-free ones (annotated, no instances)."""
    path = Path(path)
    if path.is_file():
        return _read_csv(path, options, issues)
    if path.is_dir():
        return _read_folders(path, options, issues)
    raise DataError(path, "does not exist")


# --------------------------------------------------------------------------------------------------
# Merging tags into another format
# --------------------------------------------------------------------------------------------------


def merge_tags_csv(ann: AnnotationSet, csv_path: Path, issues: IssueLog) -> None:
    """Add a tags CSV (file names relative to ``ann.root``) to the records of ``ann``, in place.

    The class map is fixed by the dataset, so a tag it does not know is an error, not a new class:
    a typo would otherwise become a class of its own.
    """
    csv_path = Path(csv_path)
    by_name = ann.by_file_name()
    negatives = _negative_words(ann)
    for row in read_tag_rows(csv_path, negatives, issues):
        record = by_name.get(row.image)
        if record is None:
            issues.error(csv_path, f"line {row.line}: image {row.image} is not in the dataset")
            continue
        ids = _known_ids(ann.class_map, row, csv_path, issues)
        if ids is None:
            continue
        if row.negative:
            _merge_negative(record, row, csv_path, issues)
        else:
            record.tags = tuple(sorted(set(record.tags or ()) | set(ids)))


def _negative_words(ann: AnnotationSet) -> tuple[str, ...]:
    """Default negative names, minus any that the dataset uses as a real class name."""
    classes = {n.lower() for n in ann.class_map.names}
    return tuple(n for n in DEFAULT_NEGATIVE_NAMES if n not in classes)


def _known_ids(class_map: ClassMap, row: TagRow, csv_path: Path, issues: IssueLog) -> tuple[int, ...] | None:
    unknown = [t for t in row.tags if t not in class_map.names]
    if unknown:
        issues.error(
            csv_path, f"line {row.line}: unknown class {unknown[0]!r} (known: {', '.join(class_map.names)})"
        )
        return None
    return tuple(class_map.id(t) for t in row.tags)


def _merge_negative(record: ImageRecord, row: TagRow, csv_path: Path, issues: IssueLog) -> None:
    if record.instances or record.tags:
        issues.error(
            csv_path,
            f"line {row.line}: {row.image} is tagged defect-free but the dataset gives it defects",
        )
        return
    record.tags = ()
    record.annotated = True
