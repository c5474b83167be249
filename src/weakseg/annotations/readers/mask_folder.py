"""Pixel-mask folders: the format most inspection teams already have.

Two layouts are read, because both are common and neither carries a schema file:

(a) *Parallel trees*: ``DATA/images/**`` beside ``DATA/masks/**`` (or ``DATA/annotations/**``), each mask
    an indexed PNG with the same relative path (or MVTec's ``<stem>_mask.png``) whose pixel values are
    class ids. Names come from ``DATA/classes.txt``, else ``options.classes``; ``options.value_map``
    overrides both because it is the most explicit statement of what a value means.
(b) *Folder per class* (Magnetic Tile): every top-level folder is a class, each image has a 0/255 mask
    beside it (same stem, ``.png``) and the class comes from the folder, not from the pixel value.
    Folders named like ``Free``/``OK`` hold known defect-free images.

Instances are the 8-connected components of each class's pixels, so boxes are always tight and
identical to what the validator and the box writers derive from the same masks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from weakseg.annotations.images import (
    IMAGE_EXTENSIONS,
    image_size,
    iter_images,
    read_label_png,
    relative_name,
)
from weakseg.annotations.masks import components, encode
from weakseg.annotations.readers import ReadOptions, register_reader
from weakseg.annotations.schema import ORIGIN_GT_MASK, AnnotationSet, ClassMap, ImageRecord, Instance
from weakseg.errors import DataError, IssueLog

#: Folders beside ``images/`` that may hold the masks of layout (a).
MASK_DIR_NAMES = ("masks", "annotations")
#: A first line of ``classes.txt`` that names value 0 rather than class 1.
BACKGROUND_NAMES = frozenset({"background", "_background_", "__background__"})
#: MVTec names a mask ``<stem>_mask.png``.
MASK_SUFFIX = "_mask"
_SEPARATORS = ("_", "-")

BinaryMode = Literal["never", "single", "always"]


# --------------------------------------------------------------------------------------------------
# Shared helpers (also used by the tags and BSDS readers)
# --------------------------------------------------------------------------------------------------


def walk_files(folder: Path) -> Iterator[tuple[Path, list[str]]]:
    """``(directory, sorted visible file names)`` for ``folder`` and every visible folder below it."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield Path(dirpath), sorted(f for f in filenames if not f.startswith("."))


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def pair_beside(directory: Path, names: Iterable[str]) -> tuple[list[tuple[Path, Path | None]], list[Path]]:
    """Split one folder's files into ``(image, mask or None)`` pairs and orphan masks.

    A ``.png`` is a mask when a non-PNG image has its stem (Magnetic Tile) or when its stem ends in
    ``_mask`` (MVTec); everything else with an image extension is an image.
    """
    images = [n for n in names if _is_image_name(n)]
    non_png_stems = {Path(n).stem for n in images if Path(n).suffix.lower() != ".png"}
    pngs = {Path(n).stem: n for n in images if Path(n).suffix.lower() == ".png"}
    masks = {stem for stem in pngs if stem in non_png_stems or stem.endswith(MASK_SUFFIX)}
    pairs: list[tuple[Path, Path | None]] = []
    used: set[str] = set()
    for name in images:
        path = Path(name)
        if path.suffix.lower() == ".png" and path.stem in masks:
            continue
        mask_stem = path.stem if path.suffix.lower() != ".png" else None
        if mask_stem not in pngs:
            mask_stem = path.stem + MASK_SUFFIX if path.stem + MASK_SUFFIX in pngs else None
        if mask_stem is not None:
            used.add(mask_stem)
        pairs.append((directory / name, None if mask_stem is None else directory / pngs[mask_stem]))
    orphans = [directory / pngs[stem] for stem in sorted(masks - used)]
    return pairs, orphans


def strip_shared_prefix(names: list[str]) -> list[str]:
    """Drop a prefix shared by all ``names`` up to its last ``_``/``-`` (``MT_Blowhole`` -> ``Blowhole``)."""
    if len(names) < 2:
        return list(names)
    prefix = _common_prefix(names)
    cut = max(prefix.rfind(sep) for sep in _SEPARATORS) + 1
    if cut == 0 or any(len(n) <= cut for n in names):
        return list(names)
    return [n[cut:] for n in names]


def _common_prefix(names: list[str]) -> str:
    """Characters shared by the start of every name (the sorted extremes bound all the others)."""
    first, last = min(names), max(names)
    n = 0
    while n < len(first) and first[n] == last[n]:
        n += 1
    return first[:n]


@dataclass(frozen=True)
class ClassFolder:
    """A top-level folder of a folder-per-class dataset and what it means."""

    path: Path
    name: str
    negative: bool


def class_folders(data: Path, negative_names: Iterable[str]) -> list[ClassFolder]:
    """The visible top-level folders of ``data`` that hold at least one image, with stripped names."""
    folders = [p for p in sorted(data.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    folders = [p for p in folders if _holds_image(p)]
    negatives = {n.lower() for n in negative_names}
    stripped = strip_shared_prefix([p.name for p in folders])
    return [ClassFolder(p, n, n.lower() in negatives) for p, n in zip(folders, stripped, strict=True)]


def _holds_image(folder: Path) -> bool:
    return any(_is_image_name(n) for _, names in walk_files(folder) for n in names)


def class_map_from_values(value_map: dict[int, str]) -> tuple[ClassMap, dict[int, int]]:
    """Class map and value -> id lookup for a ``{value: name}`` map; names keep their lowest value's order."""
    order: list[str] = []
    for value in sorted(value_map):
        if value_map[value] not in order:
            order.append(value_map[value])
    class_map = ClassMap(tuple(order))
    return class_map, {int(v): class_map.id(n) for v, n in value_map.items()}


def instances_from_binary(binary: np.ndarray, class_id: int, min_area: int) -> list[Instance]:
    """One ground-truth instance per 8-connected component of at least ``min_area`` pixels."""
    return [
        Instance(class_id, box, encode(comp), ORIGIN_GT_MASK) for box, comp in components(binary, min_area)
    ]


def instances_from_labels(labels: np.ndarray, values: dict[int, int], min_area: int) -> list[Instance]:
    """Instances of every class whose raw values (``values``: raw value -> class id) occur in ``labels``."""
    present = {int(v) for v in np.unique(labels)}
    by_class: dict[int, list[int]] = {}
    for value, class_id in values.items():
        if value in present:
            by_class.setdefault(class_id, []).append(value)
    out: list[Instance] = []
    for class_id in sorted(by_class):
        out += instances_from_binary(np.isin(labels, by_class[class_id]), class_id, min_area)
    return out


def load_mask_for(
    mask_path: Path, image_path: Path, width: int, height: int, issues: IssueLog
) -> np.ndarray | None:
    """The raw mask values, or ``None`` (after logging why) when unreadable or not the image's size."""
    try:
        mask = read_label_png(mask_path)
    except DataError as exc:
        issues.add(exc)
        return None
    mh, mw = mask.shape[:2]
    if (mw, mh) != (width, height):
        issues.error(mask_path, f"mask is {mw}x{mh} but its image {image_path} is {width}x{height}")
        return None
    return mask


def binarise(mask: np.ndarray, threshold: int) -> np.ndarray:
    """Defect pixels of a 0/255 mask (soft edges cut at ``threshold``); 0/1 masks count as binary too."""
    if mask.size and int(mask.max()) == 1:
        return mask > 0
    return mask >= threshold


def _header_size(image: Path, issues: IssueLog) -> tuple[int, int] | None:
    try:
        return image_size(image)
    except DataError as exc:
        issues.add(exc)
        return None


# --------------------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------------------


def mask_dir(data: Path) -> Path | None:
    """``masks/`` or ``annotations/`` beside ``images/`` when it holds PNG masks (layout a)."""
    if not (data / "images").is_dir():
        return None
    for name in MASK_DIR_NAMES:
        candidate = data / name
        if candidate.is_dir() and any(p.suffix.lower() == ".png" for p in candidate.rglob("*")):
            return candidate
    return None


def has_mask_beside(data: Path) -> bool:
    """Layout (b): two or more sub-folders and at least one image with a same-stem mask beside it."""
    subs = [p for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subs) < 2:
        return False
    for sub in subs:
        for directory, names in walk_files(sub):
            pairs, _ = pair_beside(directory, names)
            if any(mask is not None for _, mask in pairs):
                return True
    return False


def _detect(path: Path) -> bool:
    return path.is_dir() and (mask_dir(path) is not None or has_mask_beside(path))


# --------------------------------------------------------------------------------------------------
# Layout (a): parallel images/ and masks/ trees with indexed values
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ValueDecoder:
    """How raw mask values become class ids for one dataset."""

    class_map: ClassMap
    values: dict[int, int]  # raw value -> class id
    binary: BinaryMode  # "single": one class and 0/255 masks are binarised; "always": every mask is
    strict: bool  # unlisted non-zero values are errors (not when a value_map says they are background)

    def instances(
        self, mask: np.ndarray, mask_path: Path, options: ReadOptions, issues: IssueLog
    ) -> list[Instance]:
        if self._is_binary(mask, options.binary_threshold):
            return instances_from_binary(binarise(mask, options.binary_threshold), 1, options.min_area)
        if self.strict:
            self._check_values(mask, mask_path, issues)
        return instances_from_labels(mask, self.values, options.min_area)

    def _is_binary(self, mask: np.ndarray, threshold: int) -> bool:
        if self.binary == "always":
            return True
        return self.binary == "single" and mask.size > 0 and int(mask.max()) >= max(threshold, 2)

    def _check_values(self, mask: np.ndarray, mask_path: Path, issues: IssueLog) -> None:
        for value in np.unique(mask):
            if int(value) != 0 and int(value) not in self.values:
                issues.error(mask_path, f"unknown class id {int(value)} (known: {self.class_map.describe()})")


def read_classes_txt(path: Path) -> tuple[str, ...]:
    """Class names for values 1..K; a leading ``background`` line names value 0 and is dropped."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read class names: {exc}") from None
    names = [line.strip() for line in lines if line.strip()]
    if names and names[0].lower() in BACKGROUND_NAMES:
        names = names[1:]
    if not names:
        raise DataError(path, "lists no class names")
    return tuple(names)


def _named_decoder(data: Path, options: ReadOptions) -> _ValueDecoder | None:
    """Decoder from explicit names (value_map, classes.txt, options.classes); None when there are none."""
    if options.value_map:
        class_map, values = class_map_from_values(options.value_map)
        return _ValueDecoder(class_map, values, "never", strict=False)
    classes_txt = data / "classes.txt"
    if classes_txt.is_file():
        names = read_classes_txt(classes_txt)
        try:
            class_map = ClassMap(names)
        except DataError as exc:
            raise DataError(classes_txt, exc.problem) from None
    elif options.classes:
        class_map = ClassMap(tuple(options.classes))
    else:
        return None
    binary: BinaryMode = "single" if len(class_map) == 1 else "never"
    return _ValueDecoder(class_map, {i: i for i in class_map.ids}, binary, strict=True)


def _auto_decoder(masks: Iterable[Path]) -> _ValueDecoder:
    """Names ``class_<v>`` for every value seen; masks holding 255 are 0/255 binary with one class."""
    seen: set[int] = set()
    for mask_path in masks:
        try:
            seen.update(int(v) for v in np.unique(read_label_png(mask_path)))
        except DataError:
            continue  # reported when the mask is read for its image
    seen.discard(0)
    if 255 in seen:
        return _ValueDecoder(ClassMap(("class_255",)), {255: 1}, "always", strict=False)
    class_map = ClassMap(tuple(f"class_{v}" for v in sorted(seen)))
    return _ValueDecoder(
        class_map, {v: i for i, v in enumerate(sorted(seen), start=1)}, "never", strict=False
    )


def _index_masks(masks_root: Path) -> dict[str, Path]:
    """Relative POSIX path -> mask file, for every PNG under ``masks_root``."""
    out: dict[str, Path] = {}
    for directory, names in walk_files(masks_root):
        for name in names:
            if Path(name).suffix.lower() == ".png":
                out[relative_name(directory / name, masks_root)] = directory / name
    return out


def _mask_key(file_name: str, masks: dict[str, Path]) -> str | None:
    stem = PurePosixPath(file_name).with_suffix("").as_posix()
    for key in (f"{stem}.png", f"{stem}{MASK_SUFFIX}.png"):
        if key in masks:
            return key
    return None


def _read_parallel(data: Path, masks_root: Path, options: ReadOptions, issues: IssueLog) -> AnnotationSet:
    images_root = data / "images"
    masks = _index_masks(masks_root)
    pairs: list[tuple[Path, str, Path | None]] = []
    used: set[str] = set()
    for image in iter_images(images_root):
        file_name = relative_name(image, images_root)
        key = _mask_key(file_name, masks)
        if key is not None:
            used.add(key)
        pairs.append((image, file_name, None if key is None else masks[key]))
    decoder = _named_decoder(data, options) or _auto_decoder(m for _, _, m in pairs if m)
    records = [r for r in (_parallel_record(p, decoder, options, issues) for p in pairs) if r]
    for key in sorted(set(masks) - used):
        issues.warning(masks[key], f"mask has no image under {images_root}")
    return AnnotationSet(images_root, decoder.class_map, records, "masks")


def _parallel_record(
    pair: tuple[Path, str, Path | None], decoder: _ValueDecoder, options: ReadOptions, issues: IssueLog
) -> ImageRecord | None:
    image, file_name, mask_path = pair
    size = _header_size(image, issues)
    if size is None:
        return None
    record = ImageRecord(file_name, size[0], size[1], annotated=False)
    if mask_path is None:
        return record
    record.source = str(mask_path)
    mask = load_mask_for(mask_path, image, size[0], size[1], issues)
    if mask is not None:
        record.instances = decoder.instances(mask, mask_path, options, issues)
        record.annotated = True
    return record


# --------------------------------------------------------------------------------------------------
# Layout (b): a folder per class, binary masks beside the images
# --------------------------------------------------------------------------------------------------


def _read_per_class(data: Path, options: ReadOptions, issues: IssueLog) -> AnnotationSet:
    folders = class_folders(data, options.negative_names)
    if not folders:
        raise DataError(data, "no sub-folders with images (expected one folder per class)")
    class_map = ClassMap(tuple(sorted({f.name for f in folders if not f.negative})))
    records: list[ImageRecord] = []
    for folder in folders:
        class_id = None if folder.negative else class_map.id(folder.name)
        for directory, names in walk_files(folder.path):
            pairs, orphans = pair_beside(directory, names)
            for orphan in orphans:
                issues.warning(orphan, "mask has no image beside it")
            for image, mask_path in pairs:
                record = _class_record(data, image, mask_path, folder.name, class_id, options, issues)
                if record is not None:
                    records.append(record)
    records.sort(key=lambda r: r.file_name)
    return AnnotationSet(data, class_map, records, "masks")


def _class_record(
    data: Path,
    image: Path,
    mask_path: Path | None,
    class_name: str,
    class_id: int | None,
    options: ReadOptions,
    issues: IssueLog,
) -> ImageRecord | None:
    """One image of a class folder (``class_id`` set) or of a defect-free folder (``None``)."""
    size = _header_size(image, issues)
    if size is None:
        return None
    source = None if mask_path is None else str(mask_path)
    record = ImageRecord(relative_name(image, data), size[0], size[1], source=source)
    if class_id is None:
        record.tags = ()
        return record
    record.tags = (class_id,)
    if mask_path is None:
        record.annotated = False
        return record
    mask = load_mask_for(mask_path, image, size[0], size[1], issues)
    if mask is None:
        record.annotated = False
        return record
    binary = binarise(mask, options.binary_threshold)
    record.instances = instances_from_binary(binary, class_id, options.min_area)
    if not record.instances:
        # A defect image without a usable mask cannot count as defect-free: keep it as tag-only.
        record.annotated = False
        issues.warning(
            mask_path,
            f"folder says {class_name} but the mask holds no defect of >= {options.min_area} px; "
            "kept as an image-level tag only",
        )
    return record


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


@register_reader(
    "masks",
    detect=_detect,
    help="PNG masks: images/ + masks/ (values = class ids, classes.txt names them), "
    "or one folder per class with a 0/255 mask beside each image (Magnetic Tile)",
)
def read_mask_folder(path: Path, options: ReadOptions, issues: IssueLog) -> AnnotationSet:
    """Read either mask-folder layout; parallel trees win when both could apply."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(path, "a mask dataset is a folder (images/ + masks/, or one folder per class)")
    masks_root = mask_dir(path)
    if masks_root is not None:
        return _read_parallel(path, masks_root, options, issues)
    return _read_per_class(path, options, issues)
