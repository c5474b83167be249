"""YOLO (ultralytics) detection and segmentation labels.

Two layouts are read:

* an ultralytics ``data.yaml`` (``path``, ``train``/``val``/``test`` as folders, lists of folders or
  ``.txt`` image lists, ``names`` as a list or ``{index: name}``), each image's label file found by
  ultralytics' rule: the last ``images`` folder of its path becomes ``labels`` and the suffix ``.txt``;
* a folder with parallel ``images/`` and ``labels/`` trees, class names from ``classes.txt`` /
  ``obj.names`` (or ``ReadOptions.classes``).

Each label line is ``cls cx cy w h`` (a normalised box) or ``cls x1 y1 x2 y2 ...`` (a normalised
polygon of at least 3 points, which also gives the instance a mask). YOLO class ``k`` is internal id
``k + 1``.

Missing label files follow the ultralytics convention: when the ``labels`` folder exists, an image
without a label file is background, i.e. an annotated negative. Only when there is no ``labels``
folder at all is the image unannotated. Files written by our YOLO writer list their unannotated
images under a ``weakseg`` key in ``data.yaml`` (ignored by ultralytics), which is honoured here.

The image root is ``<path>/images`` when every image lies under it (so ``file_name`` carries no
``images/`` prefix), else the dataset ``path`` itself, e.g. for splits kept in separate trees such as
``train/images`` and ``valid/images``; each record's ``split`` comes from its yaml key.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from weakseg.annotations import masks
from weakseg.annotations.images import image_size, iter_images
from weakseg.annotations.readers import ReadOptions, register_reader
from weakseg.annotations.schema import (
    ORIGIN_BOX,
    ORIGIN_GT_MASK,
    AnnotationSet,
    ClassMap,
    ImageRecord,
    Instance,
)
from weakseg.errors import DataError, IssueLog

YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")
CLASS_FILES = ("classes.txt", "obj.names")
SPLIT_KEYS = ("train", "val", "test")


# ----------------------------------------------------------------------------------------------- detect


def _find_yaml(folder: Path) -> Path | None:
    return next((folder / n for n in YAML_NAMES if (folder / n).is_file()), None)


def _detect(path: Path) -> bool:
    if path.is_file():
        return path.name.lower() in YAML_NAMES or (
            path.suffix.lower() in (".yaml", ".yml") and _is_data_yaml(path)
        )
    if not path.is_dir():
        return False
    if _find_yaml(path) is not None:
        return True
    labels = path / "labels"
    return (path / "images").is_dir() and labels.is_dir() and any(labels.rglob("*.txt"))


def _is_data_yaml(path: Path) -> bool:
    """Any other YAML counts when it names classes and at least one split."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "names" in data and any(k in data for k in SPLIT_KEYS)


# ------------------------------------------------------------------------------------------------- read


@dataclass
class _Source:
    """The images of one split entry."""

    split: str | None
    images: list[Path] = field(default_factory=list)


@register_reader(
    "yolo",
    detect=_detect,
    help="YOLO / ultralytics labels (data.yaml, or images/ + labels/ with classes.txt)",
)
def read_yolo(path: Path, options: ReadOptions, issues: IssueLog) -> AnnotationSet:
    """Read an ultralytics ``data.yaml`` or an ``images/`` + ``labels/`` folder."""
    path = path.absolute()  # split entries may be absolute; keep every path comparable
    yaml_path = path if path.is_file() else _find_yaml(path)
    if yaml_path is not None:
        return _read_with_yaml(yaml_path, options, issues)
    return _read_folder(path, options, issues)


def load_data_yaml(yaml_path: Path) -> dict[str, Any]:
    """Parse ``data.yaml``; anything but a mapping is unusable and raises :class:`DataError`."""
    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(yaml_path, "is not UTF-8 text") from None
    except OSError as exc:
        raise DataError(yaml_path, f"cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DataError(yaml_path, f"malformed YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise DataError(yaml_path, "expected a mapping with 'names' and 'train'/'val'/'test' keys")
    return data


def _read_with_yaml(yaml_path: Path, options: ReadOptions, issues: IssueLog) -> AnnotationSet:
    data = load_data_yaml(yaml_path)
    names = parse_names(data.get("names"), yaml_path) or options.classes
    if not names:
        raise DataError(yaml_path, "no class names: add 'names: [a, b, ...]' (or pass --classes)")
    nc = data.get("nc")
    if nc is not None and nc != len(names):
        issues.error(yaml_path, f"nc is {nc} but names lists {len(names)} class(es)")
    base = _dataset_path(yaml_path, data.get("path"))
    sources = [
        s
        for key in SPLIT_KEYS
        if data.get(key)
        for s in _split_sources(key, data[key], base, yaml_path, issues)
    ]
    if not sources:
        raise DataError(
            yaml_path, "no split found: set 'train' (and optionally 'val', 'test') to an image folder"
        )
    unannotated = _unannotated(data, yaml_path, issues)
    return _build(sources, base, _class_map(names, yaml_path), unannotated, yaml_path, issues)


def _read_folder(folder: Path, options: ReadOptions, issues: IssueLog) -> AnnotationSet:
    images_dir = folder / "images"
    if not images_dir.is_dir():
        raise DataError(folder, "not a YOLO dataset: expected data.yaml, or images/ and labels/ folders")
    names = options.classes or _names_file(folder)
    if not names:
        raise DataError(
            folder, f"no class names: add {' or '.join(CLASS_FILES)} (one name per line) or pass --classes"
        )
    source = _Source(None, list(iter_images(images_dir)))
    return _build([source], folder, _class_map(names, folder), set(), None, issues)


def parse_names(raw: Any, yaml_path: Path) -> tuple[str, ...] | None:
    """``names`` as a list, or as ``{0: a, 1: b}`` whose keys must be ``0..n-1``."""
    if raw is None:
        return None
    if isinstance(raw, list):
        return tuple(str(n) for n in raw)
    if isinstance(raw, dict):
        try:
            by_index = {int(k): str(v) for k, v in raw.items()}
        except (TypeError, ValueError):
            raise DataError(yaml_path, "names keys must be class indices 0, 1, ...") from None
        if sorted(by_index) != list(range(len(by_index))):
            raise DataError(yaml_path, f"names keys must be 0..{len(by_index) - 1}, got {sorted(by_index)}")
        return tuple(by_index[i] for i in range(len(by_index)))
    raise DataError(yaml_path, "names must be a list or a mapping {index: name}")


def _names_file(folder: Path) -> tuple[str, ...] | None:
    for place in (folder, folder / "labels"):
        for name in CLASS_FILES:
            path = place / name
            if path.is_file():
                try:
                    lines = path.read_text(encoding="utf-8").splitlines()
                except (OSError, UnicodeDecodeError) as exc:
                    raise DataError(path, f"cannot read class names: {exc}") from None
                return tuple(line.strip() for line in lines if line.strip())
    return None


def _class_map(names: tuple[str, ...], where: Path) -> ClassMap:
    try:
        return ClassMap(tuple(names))
    except DataError as exc:
        raise DataError(where, exc.problem) from None


def _dataset_path(yaml_path: Path, raw: Any) -> Path:
    """``path`` relative to the yaml's folder (ultralytics' own datasets dir is not ours to guess)."""
    if not raw:
        return yaml_path.parent
    path = Path(str(raw))
    return path if path.is_absolute() else yaml_path.parent / path


def _split_sources(key: str, raw: Any, base: Path, yaml_path: Path, issues: IssueLog) -> Iterator[_Source]:
    entries = raw if isinstance(raw, list) else [raw]
    for entry in entries:
        target = _locate(base, str(entry))
        if target.is_dir():
            yield _Source(key, list(iter_images(target)))
        elif target.is_file() and target.suffix.lower() == ".txt":
            yield _Source(key, list(_listed_images(target, base)))
        else:
            issues.error(yaml_path, f"{key}: {entry} is neither an image folder nor a .txt image list")


def _locate(base: Path, entry: str) -> Path:
    path = Path(entry)
    if path.is_absolute():
        return path
    found = Path(os.path.normpath(base / path))
    if not found.exists() and entry.startswith("../"):  # Roboflow exports: ../train/images
        return Path(os.path.normpath(base / entry[3:]))
    return found


def _listed_images(list_file: Path, base: Path) -> Iterator[Path]:
    """Image paths in an ultralytics list file: ``./x`` is relative to the list, others to ``path``."""
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(list_file, f"cannot read image list: {exc}") from None
    for line in lines:
        entry = line.strip()
        if not entry:
            continue
        path = Path(entry)
        if entry.startswith("./"):
            path = list_file.parent / entry[2:]
        elif not path.is_absolute():
            path = base / path
        yield Path(os.path.normpath(path))


def image_root(base: Path, images: list[Path]) -> Path:
    """``<base>/images`` when every image lies under it, else ``<base>`` (or a folder holding both).

    This keeps ``file_name`` free of the ``images/`` prefix for the common layouts while splits kept in
    separate trees (``train/images``, ``valid/images``) stay apart.
    """
    for candidate in (base / "images", base):
        if all(p.is_relative_to(candidate) for p in images):
            return candidate
    return Path(os.path.commonpath([str(base), *(str(p.parent) for p in images)]))


def label_path(image: Path) -> tuple[Path, Path]:
    """``(label file, labels folder)`` for an image, by ultralytics' ``images`` -> ``labels`` rule."""
    parts = image.parts
    if "images" not in parts[:-1]:
        return image.with_suffix(".txt"), image.parent
    last = len(parts) - 2 - parts[-2::-1].index("images")
    labels_dir = Path(*parts[:last], "labels")
    return (labels_dir / Path(*parts[last + 1 :])).with_suffix(".txt"), labels_dir


def _unannotated(data: dict[str, Any], yaml_path: Path, issues: IssueLog) -> set[str]:
    block = data.get("weakseg")
    if not isinstance(block, dict):
        return set()
    names = block.get("unannotated") or []
    if not isinstance(names, list):
        issues.warning(yaml_path, "weakseg.unannotated is not a list; ignoring it")
        return set()
    return {str(n) for n in names}


def _build(
    sources: list[_Source],
    base: Path,
    class_map: ClassMap,
    unannotated: set[str],
    yaml_path: Path | None,
    issues: IssueLog,
) -> AnnotationSet:
    root = image_root(Path(os.path.normpath(base)), [p for s in sources for p in s.images])
    records: dict[str, ImageRecord] = {}
    for source in sources:
        for image in source.images:
            file_name = image.relative_to(root).as_posix()
            if file_name in records:
                issues.warning(
                    image, f"listed in more than one split; keeping it in {records[file_name].split}"
                )
                continue
            record = _record(image, file_name, source.split, class_map, yaml_path, issues)
            if record is not None:
                record.annotated = record.annotated and file_name not in unannotated
                records[file_name] = record
    return AnnotationSet(root, class_map, list(records.values()), "yolo")


def _record(
    image: Path,
    file_name: str,
    split: str | None,
    class_map: ClassMap,
    yaml_path: Path | None,
    issues: IssueLog,
) -> ImageRecord | None:
    try:
        width, height = image_size(image)
    except DataError as exc:
        issues.add(exc)
        return None
    if split is None and "/" in file_name and file_name.split("/", 1)[0] in SPLIT_KEYS:
        split = file_name.split("/", 1)[0]
    label, labels_dir = label_path(image)
    record = ImageRecord(file_name, width, height, split=split, source=str(yaml_path) if yaml_path else None)
    if label.is_file():
        record.source = str(label)
        instances = read_label_file(label, width, height, class_map, issues)
        record.instances = instances or []
        record.annotated = instances is not None
    else:
        record.annotated = labels_dir.is_dir()
    return record


def read_label_file(
    label: Path, width: int, height: int, class_map: ClassMap, issues: IssueLog
) -> list[Instance] | None:
    """Instances of one label file; bad lines are reported (with their number) and skipped.

    Returns ``None`` when the file cannot be read at all.
    """
    try:
        lines = label.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        issues.error(label, f"cannot read label file: {exc}")
        return None
    instances = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            instances.append(parse_line(fields, width, height, class_map))
        except ValueError as exc:
            issues.error(label, f"line {number}: {exc}")
    return instances


def parse_line(fields: list[str], width: int, height: int, class_map: ClassMap) -> Instance:
    """One label line to an instance; raises ``ValueError`` with the reason otherwise.

    Coordinates outside ``[0, 1]`` are converted anyway: the validator reports boxes outside the image.
    """
    n = len(fields) - 1
    if n != 4 and (n < 6 or n % 2):
        raise ValueError(
            "expected 5 fields (class cx cy w h) or a class and at least 3 x y points, "
            f"got {len(fields)} field(s)"
        )
    cls = _class_index(fields[0])
    if cls >= len(class_map):
        known = ", ".join(f"{i}={name}" for i, name in enumerate(class_map.names))
        raise ValueError(f"unknown class id {cls} (known: {known})")
    values = [_number(v) for v in fields[1:]]
    if n == 4:
        cx, cy, w, h = values
        box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        return Instance(class_id=cls + 1, box=box, origin=ORIGIN_BOX)
    xs = [v * width for v in values[0::2]]
    ys = [v * height for v in values[1::2]]
    polygon = [c for xy in zip(xs, ys, strict=True) for c in xy]
    mask = masks.polygons_to_rle([polygon], height, width)
    return Instance(
        class_id=cls + 1, box=(min(xs), min(ys), max(xs), max(ys)), mask=mask, origin=ORIGIN_GT_MASK
    )


def _class_index(text: str) -> int:
    value = _number(text)
    if not value.is_integer() or value < 0:
        raise ValueError(f"class {text!r} is not a non-negative integer")
    return int(value)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value
