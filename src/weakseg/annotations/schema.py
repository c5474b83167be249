"""The one internal annotation model.

Mixed supervision is the normal case: within one dataset an image may carry pixel masks for some
instances, only boxes for others, only image-level tags, or nothing at all. Every reader produces an
:class:`AnnotationSet`; every writer, teacher and trainer consumes one.

Conventions (fixed here, used everywhere):

* Class ids are contiguous, ``1..K`` for the defect classes; ``0`` is background. The class map is
  stored with every artefact so artefacts from different runs cannot be mixed silently.
* Boxes are ``(x0, y0, x1, y1)`` in pixels, half-open: a mask whose pixels span columns ``a..b``
  (inclusive) has ``x0 = a`` and ``x1 = b + 1``. This is COCO's ``[x, y, w, h]`` without the subtraction.
* Masks are COCO RLE dicts (``{"size": [h, w], "counts": str}``), one per instance, so that memory
  stays small however large the images are.
* ``file_name`` is a POSIX path relative to the dataset root.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weakseg.errors import DataError

Box = tuple[float, float, float, float]
Rle = dict[str, Any]

#: Where an instance's shape came from.
ORIGIN_GT_MASK = "gt_mask"
ORIGIN_BOX = "box"
PSEUDO_PREFIX = "pseudo:"


def pseudo_origin(teacher: str) -> str:
    """Origin tag for a mask produced by ``teacher``."""
    return f"{PSEUDO_PREFIX}{teacher}"


@dataclass(frozen=True)
class ClassMap:
    """Defect class names; the id of ``names[i]`` is ``i + 1`` (0 is background)."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        object.__setattr__(self, "names", names)
        dupes = [n for n, c in Counter(names).items() if c > 1]
        if dupes:
            raise DataError(None, f"class names must be unique; repeated: {', '.join(dupes)}")
        if any(not n.strip() for n in names):
            raise DataError(None, "class names must not be empty")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def ids(self) -> range:
        return range(1, len(self.names) + 1)

    def name(self, class_id: int) -> str:
        if class_id not in self.ids:
            raise KeyError(f"unknown class id {class_id} (known: {self.describe()})")
        return self.names[class_id - 1]

    def id(self, name: str) -> int:
        try:
            return self.names.index(name) + 1
        except ValueError:
            raise KeyError(f"unknown class name {name!r} (known: {', '.join(self.names)})") from None

    def describe(self) -> str:
        return ", ".join(f"{i}={n}" for i, n in zip(self.ids, self.names, strict=True)) or "none"

    def to_dict(self) -> dict[str, Any]:
        return {"background": 0, "classes": {str(i): n for i, n in zip(self.ids, self.names, strict=True)}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassMap:
        classes = data["classes"]
        ids = sorted(int(k) for k in classes)
        if ids != list(range(1, len(ids) + 1)):
            raise DataError(None, f"class map ids must be 1..K, got {ids}")
        return cls(tuple(classes[str(i)] for i in ids))


@dataclass
class Instance:
    """One defect instance: a class and a box, optionally a mask and a quality score."""

    class_id: int
    box: Box
    mask: Rle | None = None
    origin: str = ORIGIN_BOX
    score: float | None = None
    crowd: bool = False

    @property
    def has_mask(self) -> bool:
        return self.mask is not None

    @property
    def box_area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


@dataclass
class ImageRecord:
    """One image and whatever annotation it has.

    ``annotated`` says whether ``instances`` is exhaustive: an annotated image with no instances is a
    known defect-free (negative) image; an image with ``annotated=False`` is unlabelled, and nothing may
    be concluded from its empty instance list. ``tags`` are image-level class ids (``None`` = unknown,
    ``()`` = known defect-free).
    """

    file_name: str
    width: int
    height: int
    instances: list[Instance] = field(default_factory=list)
    tags: tuple[int, ...] | None = None
    annotated: bool = True
    split: str | None = None
    source: str | None = None  # the annotation file this record came from, for error messages

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``, the numpy order."""
        return (self.height, self.width)

    @property
    def is_negative(self) -> bool:
        """Known to be defect-free (annotated with no instances, or tagged OK)."""
        if self.instances or self.tags:
            return False
        return self.annotated or self.tags == ()

    @property
    def image_tags(self) -> tuple[int, ...] | None:
        """The image-level tags the record implies: its tags and the classes of its instances, ``()``
        for a known defect-free image, ``None`` when nothing is known (an unlabelled image)."""
        if self.tags is None and not self.annotated and not self.instances:
            return None
        return tuple(sorted(self.class_ids()))

    def class_ids(self) -> set[int]:
        ids = {inst.class_id for inst in self.instances}
        if self.tags:
            ids.update(self.tags)
        return ids


@dataclass
class AnnotationSet:
    """A dataset: images under ``root``, their annotations and the class map."""

    root: Path
    class_map: ClassMap
    images: list[ImageRecord] = field(default_factory=list)
    format: str = "unknown"

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.images)

    def image_path(self, record: ImageRecord) -> Path:
        return self.root / record.file_name

    def instances(self) -> Iterable[tuple[ImageRecord, Instance]]:
        for record in self.images:
            for inst in record.instances:
                yield record, inst

    def by_file_name(self) -> dict[str, ImageRecord]:
        return {r.file_name: r for r in self.images}

    def with_files(self, file_names: Iterable[str]) -> AnnotationSet:
        """The images whose ``file_name`` is in ``file_names``, sharing records with this set."""
        wanted = set(file_names)
        return AnnotationSet(
            self.root, self.class_map, [r for r in self.images if r.file_name in wanted], self.format
        )

    def subset(self, split: str | Sequence[str]) -> AnnotationSet:
        """The images of one split (or several), sharing records with this set."""
        wanted = {split} if isinstance(split, str) else set(split)
        return AnnotationSet(
            self.root, self.class_map, [r for r in self.images if r.split in wanted], self.format
        )
