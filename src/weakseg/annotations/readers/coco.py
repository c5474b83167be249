"""COCO instance JSON: the lingua franca of annotation tools (CVAT, Label Studio, Roboflow exports).

COCO category ids are arbitrary (often 1-based with gaps); they are mapped to the internal ``1..K`` in
ascending COCO id order. Every segmentation flavour (polygons, compressed RLE, uncompressed RLE) ends
up as one compressed RLE per instance. Files written by :mod:`weakseg.annotations.writers.coco` carry
a ``"weakseg"`` block that lists unannotated images, which plain COCO cannot express.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pycocotools import mask as mask_utils

from weakseg.annotations import masks
from weakseg.annotations.images import image_size, resolve_inside
from weakseg.annotations.readers import ReadOptions, register_reader
from weakseg.annotations.schema import (
    ORIGIN_BOX,
    ORIGIN_GT_MASK,
    AnnotationSet,
    Box,
    ClassMap,
    ImageRecord,
    Instance,
    Rle,
    pseudo_origin,
)
from weakseg.errors import DataError, IssueLog

#: Preferred annotation file name inside a dataset folder.
DEFAULT_JSON_NAME = "annotations.json"
#: How much of a JSON file is sniffed for an ``"images"`` key during detection (whole-file parsing of a
#: multi-hundred-megabyte COCO file just to pick a reader would double the load time).
_SNIFF_BYTES = 1 << 20
_IMAGES_KEY = re.compile(r'"images"\s*:')
#: How many image names are probed on disk when choosing the image root.
_ROOT_PROBE = 50


# ----------------------------------------------------------------------------------------------- detect


def _looks_like_coco(path: Path) -> bool:
    """Cheap test: a ``.json`` file that mentions a top-level-looking ``"images"`` key."""
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError:
        return False
    return head.lstrip().startswith("{") and _IMAGES_KEY.search(head) is not None


def find_coco_json(folder: Path) -> Path | None:
    """The COCO file of a dataset folder: ``annotations.json`` first, else the only COCO-looking json."""
    places = [folder, folder / "annotations"]
    for place in places:
        preferred = place / DEFAULT_JSON_NAME
        if _looks_like_coco(preferred):
            return preferred
    found = [
        p for place in places if place.is_dir() for p in sorted(place.glob("*.json")) if _looks_like_coco(p)
    ]
    return found[0] if len(found) == 1 else None


#: A COCO file whose name declares its split: ``instances_train2017.json``, ``train.json``, ``val.json``.
_SPLIT_NAME = re.compile(
    r"(?:^|[_.-])((train|training|val|valid|validation|test|testing)\d*)$", re.IGNORECASE
)


def find_split_jsons(folder: Path) -> dict[str, Path] | None:
    """The COCO files of a dataset kept as one file per split (``instances_train.json``, ``val.json``,
    ...), by split name as written in the file name; ``None`` unless every COCO file names a split."""
    for place in (folder, folder / "annotations"):
        if not place.is_dir():
            continue
        found = [p for p in sorted(place.glob("*.json")) if _looks_like_coco(p)]
        named = {p: _SPLIT_NAME.search(p.stem) for p in found}
        if len(found) >= 2 and all(named.values()):
            by_split: dict[str, Path] = {}
            for p, match in named.items():
                split = match.group(1)  # type: ignore[union-attr]  # e.g. train2017, its image folder
                if split in by_split:
                    names = f"{by_split[split].name}, {p.name}"
                    raise DataError(place, f"two COCO files for split {split!r}: {names}")
                by_split[split] = p
            return by_split
    return None


def _detect(path: Path) -> bool:
    if path.is_dir():
        return find_coco_json(path) is not None or find_split_jsons(path) is not None
    return _looks_like_coco(path)


# ------------------------------------------------------------------------------------------------- read


@register_reader(
    "coco",
    detect=_detect,
    help="COCO instances JSON (a .json file, or a folder holding annotations.json and images/)",
)
def read_coco(path: Path, options: ReadOptions, issues: IssueLog) -> AnnotationSet:
    """Read a COCO instances file (or a folder holding one, or one per split)."""
    if path.is_dir() and find_coco_json(path) is None:
        per_split = find_split_jsons(path)
        if per_split is not None:
            return _read_per_split(per_split, issues)
    return _read_one(_resolve_json(path), issues)


def _read_per_split(files: dict[str, Path], issues: IssueLog) -> AnnotationSet:
    """One set from a COCO file per split: each record keeps its file's split, names are made relative
    to the images' common root (COCO 2017 keeps ``train2017/`` and ``val2017/`` side by side)."""
    parts = {}
    for split, json_path in files.items():
        base = json_path.parent.parent if json_path.parent.name == "annotations" else json_path.parent
        parts[split] = _read_one(json_path, issues, (base / "images" / split, base / split))
    first_split, first = next(iter(parts.items()))
    for split, ann in parts.items():
        if ann.class_map != first.class_map:
            raise DataError(
                files[split],
                f"categories differ from {files[first_split].name}: {ann.class_map.describe()} vs "
                f"{first.class_map.describe()}",
            )
    root = Path(os.path.commonpath([str(ann.root.resolve()) for ann in parts.values()]))
    records: list[ImageRecord] = []
    seen: dict[str, str] = {}
    for split, ann in parts.items():
        prefix = PurePosixPath(ann.root.resolve().relative_to(root).as_posix())
        for record in ann.images:
            record.file_name = (prefix / record.file_name).as_posix()
            record.split = _SPLIT_NAME.search(split).group(2).lower()  # type: ignore[union-attr]
            if record.file_name in seen:
                raise DataError(
                    files[split], f"image {record.file_name} is also in the {seen[record.file_name]} file"
                )
            seen[record.file_name] = split
            records.append(record)
    return AnnotationSet(root, first.class_map, records, "coco")


def _read_one(json_path: Path, issues: IssueLog, extra_roots: tuple[Path, ...] = ()) -> AnnotationSet:
    data = load_coco_json(json_path)
    categories = _read_categories(data, json_path)
    class_map = _class_map(categories, json_path)
    cat_to_id = {coco_id: i for i, coco_id in enumerate(sorted(categories), start=1)}
    block = _weakseg_block(data, json_path, class_map, issues)
    unannotated = set(block.get("unannotated", []))

    raw_images = data["images"]
    root = block.get("image_root") or choose_image_root(
        json_path, [im.get("file_name") for im in raw_images if isinstance(im, dict)], extra_roots
    )
    ctx = _Context(json_path, root, class_map, cat_to_id, categories, issues)
    records: dict[Any, ImageRecord] = {}
    for index, raw in enumerate(raw_images):
        key_record = ctx.image(index, raw)
        if key_record is None:
            continue
        key, record = key_record
        if key in records:
            issues.error(json_path, f"images[{index}]: duplicate image id {key!r}; keeping the first")
            continue
        record.annotated = record.file_name not in unannotated
        records[key] = record

    for index, raw in enumerate(data.get("annotations") or []):
        found = ctx.instance(index, raw, records)
        if found is not None:
            key, inst = found
            records[key].instances.append(inst)
    return AnnotationSet(root, class_map, list(records.values()), "coco")


def _resolve_json(path: Path) -> Path:
    if not path.is_dir():
        return path
    found = find_coco_json(path)
    if found is None:
        raise DataError(
            path,
            f"no COCO file found: expected {DEFAULT_JSON_NAME} (or exactly one COCO .json) here or in "
            "annotations/",
        )
    return found


def load_coco_json(json_path: Path) -> dict[str, Any]:
    """Parse a COCO file, raising :class:`DataError` for anything that is not COCO-shaped."""
    try:
        text = json_path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(json_path, "is not UTF-8 text; COCO files must be UTF-8 JSON") from None
    except OSError as exc:
        raise DataError(json_path, f"cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            json_path, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(json_path, 'not a COCO file: the top level needs an "images" list')
    for key in ("annotations", "categories"):
        if key in data and data[key] is not None and not isinstance(data[key], list):
            raise DataError(json_path, f'not a COCO file: "{key}" must be a list')
    return data


def _read_categories(data: dict[str, Any], json_path: Path) -> dict[int, str]:
    """COCO category id -> name; structurally broken categories make ids meaningless, so they raise."""
    categories: dict[int, str] = {}
    for index, cat in enumerate(data.get("categories") or []):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise DataError(json_path, f'categories[{index}] needs an "id" and a "name"')
        coco_id = _as_int(cat["id"])
        if coco_id is None:
            raise DataError(json_path, f"categories[{index}]: id {cat['id']!r} is not an integer")
        if coco_id in categories:
            raise DataError(json_path, f"categories[{index}]: category id {coco_id} is used twice")
        categories[coco_id] = str(cat["name"])
    return categories


def _class_map(categories: dict[int, str], json_path: Path) -> ClassMap:
    try:
        return ClassMap(tuple(categories[k] for k in sorted(categories)))
    except DataError as exc:
        raise DataError(json_path, exc.problem) from None


def _weakseg_block(data: dict[str, Any], json_path: Path, class_map: ClassMap, issues: IssueLog) -> dict:
    """The block our writer adds; its class map must agree with the categories or it is stale."""
    block = data.get("weakseg")
    if not isinstance(block, dict):
        return {}
    stored = block.get("class_map")
    if isinstance(stored, dict):
        try:
            if ClassMap.from_dict(stored) != class_map:
                issues.warning(
                    json_path,
                    f'the "weakseg" class map disagrees with "categories"; using categories '
                    f"({class_map.describe()})",
                )
        except (DataError, KeyError, TypeError, ValueError, AttributeError):
            issues.warning(json_path, 'ignoring an unreadable "weakseg" class map')
    unannotated = block.get("unannotated", [])
    if not isinstance(unannotated, list):
        issues.warning(json_path, '"weakseg.unannotated" is not a list; ignoring it')
        return {}
    result: dict[str, Any] = {"unannotated": [str(f) for f in unannotated]}
    image_root = block.get("image_root")
    if isinstance(image_root, str) and image_root:
        # Files such as a pseudo-label store point back at the dataset's images instead of copying them.
        root = (json_path.parent / image_root) if not Path(image_root).is_absolute() else Path(image_root)
        if root.is_dir():
            result["image_root"] = root
        else:
            issues.error(json_path, f'"weakseg.image_root" {image_root!r} is not a folder')
    return result


def choose_image_root(json_path: Path, file_names: list[Any], extra: tuple[Path, ...] = ()) -> Path:
    """``<json folder>/images`` if present, else the json's folder.

    A later candidate (the parent of an ``annotations/`` folder, the standard COCO layout, then
    ``extra``, e.g. a split file's ``train2017/``) wins only when strictly more of the listed images
    exist under it, so exports whose ``file_name`` already starts with ``images/`` still resolve.
    """
    base = json_path.parent
    candidates = [base / "images", base]
    if base.name == "annotations":
        candidates += [base.parent / "images", base.parent]
    candidates += list(extra)
    existing = [c for c in candidates if c.is_dir()] or [base]
    sample = [f for f in file_names if isinstance(f, str) and _plain_relative(f)][:_ROOT_PROBE]
    if not sample or len(existing) == 1:
        return existing[0]
    return max(existing, key=lambda c: sum((c / f).is_file() for f in sample))


def _plain_relative(name: str) -> bool:
    """A name that can be probed on disk without risking a look outside the dataset."""
    return bool(name) and not name.startswith(("/", "\\")) and ".." not in Path(name).parts


@dataclass
class _Context:
    """What turning one COCO entry into a record or instance needs."""

    json_path: Path
    root: Path
    class_map: ClassMap
    cat_to_id: dict[int, int]
    categories: dict[int, str]
    issues: IssueLog

    def image(self, index: int, raw: Any) -> tuple[Any, ImageRecord] | None:
        where = f"images[{index}]"
        if not isinstance(raw, dict):
            self.issues.error(self.json_path, f"{where} is not an object")
            return None
        if not _is_key(raw.get("id")) or not isinstance(raw.get("file_name"), str) or not raw["file_name"]:
            self.issues.error(self.json_path, f'{where} needs an integer or string "id" and a "file_name"')
            return None
        file_name = raw["file_name"]
        size = self._size(where, raw)
        if size is None:
            return None
        record = ImageRecord(
            file_name=file_name,
            width=size[0],
            height=size[1],
            tags=self._tags(where, raw.get("tags")),
            split=raw["split"] if isinstance(raw.get("split"), str) else None,
            source=str(self.json_path),
        )
        return raw["id"], record

    def _size(self, where: str, raw: dict[str, Any]) -> tuple[int, int] | None:
        width, height = _as_int(raw.get("width")), _as_int(raw.get("height"))
        if width is not None and height is not None and width > 0 and height > 0:
            return width, height
        try:
            path = resolve_inside(self.root, raw["file_name"], source=self.json_path)
            return image_size(path)
        except DataError as exc:
            self.issues.error(
                self.json_path,
                f"{where} ({raw['file_name']}): no width/height in the file and cannot read them from the "
                f"image: {exc.problem}",
            )
            return None

    def _tags(self, where: str, raw: Any) -> tuple[int, ...] | None:
        if raw is None:
            return None
        if not isinstance(raw, list):
            self.issues.error(self.json_path, f'{where}: "tags" must be a list of class names')
            return None
        tags = []
        for name in raw:
            try:
                tags.append(self.class_map.id(str(name)))
            except KeyError as exc:
                self.issues.error(self.json_path, f"{where}: tag {exc.args[0]}")
        return tuple(sorted(set(tags)))

    def instance(self, index: int, raw: Any, records: dict[Any, ImageRecord]) -> tuple[Any, Instance] | None:
        where = f"annotations[{index}]" + (
            f" (id {raw['id']})" if isinstance(raw, dict) and "id" in raw else ""
        )
        if not isinstance(raw, dict):
            self.issues.error(self.json_path, f"{where} is not an object")
            return None
        record = records.get(raw["image_id"]) if _is_key(raw.get("image_id")) else None
        if record is None:
            self.issues.error(self.json_path, f"{where}: unknown image_id {raw.get('image_id')!r}")
            return None
        class_id = self._class_id(where, raw.get("category_id"))
        if class_id is None:
            return None
        try:
            mask = segmentation_to_rle(raw.get("segmentation"), record.height, record.width)
            box = _box(raw.get("bbox"), mask)
        except ValueError as exc:
            self.issues.error(self.json_path, f"{where}: {exc}")
            return None
        return raw["image_id"], Instance(
            class_id=class_id,
            box=box,
            mask=mask,
            origin=_origin(raw, mask),
            score=_score(raw),
            crowd=bool(raw.get("iscrowd", 0)),
        )

    def _class_id(self, where: str, category_id: Any) -> int | None:
        coco_id = _as_int(category_id)
        if coco_id in self.cat_to_id:
            return self.cat_to_id[coco_id]
        known = ", ".join(f"{k}={v}" for k, v in sorted(self.categories.items())) or "none"
        self.issues.error(self.json_path, f"{where}: unknown class id {category_id!r} (known: {known})")
        return None


def segmentation_to_rle(seg: Any, height: int, width: int) -> Rle | None:
    """Any COCO segmentation to one compressed RLE, or ``None`` for a box-only annotation.

    Raises ``ValueError`` with a user-facing message for shapes that cannot be a segmentation.
    """
    if seg is None or seg == [] or seg == {}:
        return None
    if isinstance(seg, dict):
        return _rle_dict(seg)
    if isinstance(seg, list):
        polygons = [seg] if all(_is_number(v) for v in seg) else seg  # a bare flat polygon
        return masks.polygons_to_rle(_check_polygons(polygons), height, width)
    raise ValueError(f"segmentation of type {type(seg).__name__} is neither polygons nor RLE")


def _check_polygons(polygons: list[Any]) -> list[list[float]]:
    out = []
    for k, poly in enumerate(polygons):
        if not isinstance(poly, list) or not all(_is_number(v) for v in poly):
            raise ValueError(f"polygon {k} is not a list of numbers")
        if len(poly) % 2:
            raise ValueError(f"polygon {k} has an odd number of coordinates ({len(poly)})")
        if len(poly) < 6:
            raise ValueError(f"polygon {k} has {len(poly) // 2} point(s); a polygon needs at least 3")
        out.append([float(v) for v in poly])
    return out


def _rle_dict(seg: dict[str, Any]) -> Rle:
    size, counts = seg.get("size"), seg.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(_as_int(v) is not None for v in size)):
        raise ValueError('RLE segmentation needs "size": [height, width]')
    h, w = int(size[0]), int(size[1])
    if isinstance(counts, str):
        return {"size": [h, w], "counts": counts}
    if isinstance(counts, list) and all(_as_int(v) is not None for v in counts):
        if sum(int(v) for v in counts) != h * w:
            raise ValueError(f"uncompressed RLE counts sum to {sum(counts)}, expected {h}*{w}={h * w}")
        compressed = mask_utils.frPyObjects({"size": [h, w], "counts": [int(v) for v in counts]}, h, w)
        return {"size": [h, w], "counts": compressed["counts"].decode("ascii")}
    raise ValueError('RLE segmentation needs "counts" as a string or a list of integers')


def _box(bbox: Any, mask: Rle | None) -> Box:
    if bbox is not None:
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            raise ValueError(f"bbox must be [x, y, width, height], got {bbox!r}")
        x, y, w, h = (float(v) for v in bbox)
        return (x, y, x + w, y + h)
    if mask is not None:
        box = masks.rle_box(mask)
        if box is not None:
            return box
        raise ValueError("no bbox and the segmentation is empty")
    raise ValueError("has neither a bbox nor a segmentation")


def _origin(raw: dict[str, Any], mask: Rle | None) -> str:
    teacher = raw.get("teacher")
    if isinstance(teacher, str) and teacher:
        return pseudo_origin(teacher)
    return ORIGIN_GT_MASK if mask is not None else ORIGIN_BOX


def _score(raw: dict[str, Any]) -> float | None:
    score = raw.get("score")
    return float(score) if _is_number(score) else None


def _is_key(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _as_int(value: Any) -> int | None:
    """An integer from an int or an integral float (some exporters write ``3.0``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None
