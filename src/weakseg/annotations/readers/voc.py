"""Pascal VOC XML (LabelImg, CVAT "Pascal VOC" exports): one XML file of boxes per image.

Layouts: the devkit (``Annotations/*.xml`` + ``JPEGImages/``, splits from ``ImageSets/Main/*.txt``),
or a folder of XML files next to their images. VOC pixel coordinates are 1-based and inclusive; they
become half-open 0-based boxes ``(xmin - 1, ymin - 1, xmax, ymax)``. Images in the image folder that no
XML file describes are kept as unannotated (nothing can be concluded from a missing XML file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException, ElementTree

from weakseg.annotations.images import IMAGE_EXTENSIONS, image_size, iter_images, resolve_inside
from weakseg.annotations.readers import ReadOptions, register_reader
from weakseg.annotations.schema import ORIGIN_BOX, AnnotationSet, Box, ClassMap, ImageRecord, Instance
from weakseg.errors import DataError, IssueLog

_ROOT_TAG = re.compile(rb"<annotation[\s>]")
_SNIFF_BYTES = 4096
_SNIFF_FILES = 5
_SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------------------------- detect


def _child_dir(folder: Path, name: str) -> Path | None:
    """A sub-folder matched case-insensitively (``Annotations`` vs ``annotations``)."""
    exact = folder / name
    if exact.is_dir():
        return exact
    if not folder.is_dir():
        return None
    return next((p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.lower() == name.lower()), None)


def _is_voc_xml(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return _ROOT_TAG.search(fh.read(_SNIFF_BYTES)) is not None
    except OSError:
        return False


def _detect(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() == ".xml" and _is_voc_xml(path)
    ann_dir = _child_dir(path, "Annotations")
    if ann_dir is not None and any(ann_dir.rglob("*.xml")):
        return True
    return any(_is_voc_xml(p) for p in sorted(path.glob("*.xml"))[:_SNIFF_FILES])


# ------------------------------------------------------------------------------------------------- read


@dataclass
class _Layout:
    """Where the XML files are and which folder their ``<filename>`` is relative to."""

    xml_files: list[Path]
    image_dir: Path
    recursive_images: bool  # devkit image folders may be nested; a flat folder's sub-folders are not ours
    scan_images: bool = True  # look for images no XML describes (not when reading a single XML file)
    splits: dict[str, str] = field(default_factory=dict)  # xml stem -> split


@dataclass
class _Object:
    name: str
    box: Box


@dataclass
class _Parsed:
    xml: Path
    filename: str | None
    width: int | None
    height: int | None
    objects: list[_Object]


@register_reader(
    "voc",
    detect=_detect,
    help="Pascal VOC XML (Annotations/ + JPEGImages/, or XML files next to the images)",
)
def read_voc(path: Path, options: ReadOptions, issues: IssueLog) -> AnnotationSet:
    """Read a VOC devkit folder, a folder of XML files beside images, or one XML file."""
    layout = _layout(path, issues)
    parsed = [p for p in (_parse(xml, issues) for xml in layout.xml_files) if p is not None]
    class_map = _class_map(parsed, options, path)
    records: dict[str, ImageRecord] = {}
    for item in parsed:
        record = _record(item, layout, class_map, issues)
        if record is None:
            continue
        if record.file_name in records:
            issues.warning(
                item.xml, f"{record.file_name} is also described by {records[record.file_name].source}"
            )
            continue
        records[record.file_name] = record
    if layout.scan_images:
        _add_unannotated(records, layout, issues)
    return AnnotationSet(layout.image_dir, class_map, list(records.values()), "voc")


def _layout(path: Path, issues: IssueLog) -> _Layout:
    if path.is_file():
        devkit = path.parent.name.lower() == "annotations"
        base = path.parent.parent if devkit else path.parent
        image_dir = (_image_folder(base) if devkit else None) or path.parent
        return _Layout([path], image_dir, devkit, scan_images=False)
    ann_dir = _child_dir(path, "Annotations")
    if ann_dir is not None:
        image_dir = _image_folder(path) or ann_dir
        return _Layout(sorted(ann_dir.rglob("*.xml")), image_dir, True, splits=_read_splits(path))
    xml_files = []
    for xml in sorted(path.glob("*.xml")):
        if _is_voc_xml(xml):
            xml_files.append(xml)
        else:
            issues.warning(xml, "not a VOC annotation (no <annotation> root); skipped")
    if not xml_files:
        raise DataError(
            path, "no VOC XML files found (expected Annotations/*.xml or *.xml next to the images)"
        )
    return _Layout(xml_files, path, False)


def _image_folder(base: Path) -> Path | None:
    return _child_dir(base, "JPEGImages") or _child_dir(base, "images")


def _read_splits(devkit: Path) -> dict[str, str]:
    """``ImageSets/Main/{train,val,test}.txt`` as xml stem -> split (first listing wins)."""
    main = devkit / "ImageSets" / "Main"
    splits: dict[str, str] = {}
    for split in _SPLITS:
        listing = main / f"{split}.txt"
        if not listing.is_file():
            continue
        for line in listing.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = line.split()
            if fields:
                splits.setdefault(fields[0], split)
    return splits


def parse_voc_xml(xml: Path) -> Element:
    """Parse safely (defusedxml); malformed or hostile XML raises :class:`DataError`."""
    try:
        return ElementTree.parse(xml).getroot()
    except ParseError as exc:
        raise DataError(xml, f"malformed XML: {exc}") from None
    except DefusedXmlException as exc:
        raise DataError(xml, f"refusing unsafe XML: {exc}") from None
    except OSError as exc:
        raise DataError(xml, f"cannot read: {exc.strerror or exc}") from None


def _parse(xml: Path, issues: IssueLog) -> _Parsed | None:
    root = parse_voc_xml(xml)
    if root.tag != "annotation":
        issues.warning(xml, f"root element is <{root.tag}>, not <annotation>; skipped")
        return None
    size = root.find("size")
    objects = []
    for k, obj in enumerate(root.iter("object"), start=1):
        try:
            objects.append(_object(obj))
        except ValueError as exc:
            issues.error(xml, f"object {k}: {exc}")
    return _Parsed(
        xml=xml,
        filename=_text(root, "filename"),
        width=_positive_int(_text(size, "width")) if size is not None else None,
        height=_positive_int(_text(size, "height")) if size is not None else None,
        objects=objects,
    )


def _object(obj: Element) -> _Object:
    name = _text(obj, "name")
    if not name:
        raise ValueError("has no <name>")
    bndbox = obj.find("bndbox")
    if bndbox is None:
        raise ValueError(f"{name!r} has no <bndbox>")
    coords = []
    for tag in ("xmin", "ymin", "xmax", "ymax"):
        text = _text(bndbox, tag)
        try:
            coords.append(float(text or ""))
        except ValueError:
            raise ValueError(f"{name!r}: <{tag}> is {text!r}, not a number") from None
    return _Object(name, voc_to_box(*coords))


def voc_to_box(xmin: float, ymin: float, xmax: float, ymax: float) -> Box:
    """1-based inclusive VOC pixel corners to a half-open 0-based box."""
    return (xmin - 1.0, ymin - 1.0, xmax, ymax)


def _class_map(parsed: list[_Parsed], options: ReadOptions, where: Path) -> ClassMap:
    names = options.classes or tuple(sorted({o.name for p in parsed for o in p.objects}))
    try:
        return ClassMap(tuple(names))
    except DataError as exc:
        raise DataError(where, exc.problem) from None


def _record(item: _Parsed, layout: _Layout, class_map: ClassMap, issues: IssueLog) -> ImageRecord | None:
    file_name = _image_name(item, layout)
    width, height = item.width, item.height
    if width is None or height is None:
        try:
            width, height = image_size(resolve_inside(layout.image_dir, file_name, source=item.xml))
        except DataError as exc:
            issues.error(item.xml, f"no <size> and cannot read it from the image {file_name}: {exc.problem}")
            return None
    instances = []
    for k, obj in enumerate(item.objects, start=1):
        if obj.name not in class_map.names:
            issues.error(
                item.xml, f"object {k}: unknown class {obj.name!r} (known: {', '.join(class_map.names)})"
            )
            continue
        instances.append(Instance(class_id=class_map.id(obj.name), box=obj.box, origin=ORIGIN_BOX))
    return ImageRecord(
        file_name=file_name,
        width=width,
        height=height,
        instances=instances,
        split=layout.splits.get(item.xml.stem),
        source=str(item.xml),
    )


def _image_name(item: _Parsed, layout: _Layout) -> str:
    """``<filename>`` if it names an existing image, else ``<xml stem>.<ext>`` (or ``<filename>.<ext>``).

    A name that escapes the image folder is returned untouched and never looked at: the validator
    reports it.
    """
    folder = layout.image_dir
    given = item.filename
    if given:
        try:
            if resolve_inside(folder, given).is_file():
                return Path(given).as_posix()
        except DataError:
            return given
    bases = [item.xml.stem]
    if given and not Path(given).suffix:
        bases.insert(0, given)
    for base in bases:
        for ext in sorted(IMAGE_EXTENSIONS):
            for candidate in (base + ext, base + ext.upper()):
                if _safe_is_file(folder, candidate):
                    return Path(candidate).as_posix()
    return Path(given).as_posix() if given else f"{item.xml.stem}.jpg"


def _safe_is_file(folder: Path, name: str) -> bool:
    try:
        return resolve_inside(folder, name).is_file()
    except DataError:
        return False


def _add_unannotated(records: dict[str, ImageRecord], layout: _Layout, issues: IssueLog) -> None:
    """Images no XML describes: kept, but as unlabelled (their instances are unknown)."""
    for image in iter_images(layout.image_dir):
        if not layout.recursive_images and image.parent != layout.image_dir:
            continue
        file_name = image.relative_to(layout.image_dir).as_posix()
        if file_name in records:
            continue
        try:
            width, height = image_size(image)
        except DataError as exc:
            issues.warning(exc.path, f"unlabelled image skipped: {exc.problem}")
            continue
        records[file_name] = ImageRecord(file_name, width, height, annotated=False, split=None, source=None)


def _text(node: Any, tag: str) -> str | None:
    if node is None:
        return None
    child = node.find(tag)
    if child is None or child.text is None:
        return None
    return child.text.strip() or None


def _positive_int(text: str | None) -> int | None:
    """Sizes are sometimes written as ``500.0``; ``0`` (a LabelImg quirk) means unknown."""
    try:
        value = float(text or "")
    except ValueError:
        return None
    return int(value) if value.is_integer() and value > 0 else None
