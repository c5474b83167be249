"""The teacher protocol and registry.

A teacher sees one image and all its boxes at once (so SAM can embed the image once) and returns,
per box, a full-image boolean mask and its own confidence in ``[0, 1]``. Shared refinement and the
quality score are applied afterwards by :func:`weakseg.teachers.refine.refine`, so every teacher is
post-processed and scored the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from weakseg.errors import WeaksegError
from weakseg.utils.hashing import stable_hash

if TYPE_CHECKING:
    from weakseg.teachers.refine import RefineConfig


@dataclass
class TeacherOutput:
    """A teacher's raw answer for one box: full-image mask and its own confidence."""

    mask: np.ndarray  # bool (H, W)
    confidence: float


@dataclass
class PseudoMask:
    """A refined pseudo-mask with the scores that go into the store."""

    mask: np.ndarray  # bool (H, W), clipped to the (dilated) box
    quality: float  # in [0, 1]; 0 for an empty mask
    confidence: float
    fill_ratio: float  # mask area / box area
    box_iou: float  # IoU of the prompt box and the mask's tight box
    empty: bool


@dataclass
class TagMask:
    """A tag teacher's three-state answer for one tagged class of one image.

    ``mask`` is the defect, ``ignore`` the pixels it cannot decide; every other pixel is background.
    """

    class_id: int
    mask: np.ndarray  # bool (H, W)
    ignore: np.ndarray  # bool (H, W), disjoint from mask
    quality: float  # in [0, 1]; 0 for an empty mask
    confidence: float  # the classifier's probability of the tag


class Teacher:
    """Base class: subclasses set ``name`` and implement :meth:`predict`.

    Constructor keyword arguments are the teacher's configuration; :meth:`config` returns them so
    the store can hash them and a restart can tell whether finished work is still valid.
    """

    name: ClassVar[str] = "teacher"
    #: What the teacher labels from: ``"boxes"`` (:meth:`predict`, one mask per box) or ``"tags"``
    #: (:meth:`label_tags`, one three-state mask per image-level tag).
    supervision: ClassVar[str] = "boxes"

    def __init__(self, **config: Any) -> None:
        self._config = dict(config)

    def config(self) -> dict[str, Any]:
        return {"teacher": self.name, **self._config}

    def config_hash(self) -> str:
        return stable_hash(self.config())

    def predict(self, image: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray) -> list[TeacherOutput]:
        """``image`` is ``(H, W)`` or ``(H, W, 3)`` uint8; ``boxes`` ``(N, 4)`` half-open xyxy pixels."""
        raise NotImplementedError

    def label(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        class_ids: np.ndarray,
        refine_config: RefineConfig | None = None,
    ) -> list[PseudoMask]:
        """Predict, then apply the shared refinement and quality score to every box."""
        from weakseg.teachers.refine import RefineConfig, refine

        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        if len(boxes) == 0:
            return []
        outputs = self.predict(image, boxes, np.asarray(class_ids).reshape(-1))
        if len(outputs) != len(boxes):
            raise WeaksegError(f"teacher {self.name!r} returned {len(outputs)} masks for {len(boxes)} boxes")
        config = refine_config or RefineConfig()
        return [refine(out, tuple(box), config) for out, box in zip(outputs, boxes, strict=True)]


class TagTeacher(Teacher):
    """A teacher that labels from image-level tags instead of boxes (the CAM family)."""

    supervision: ClassVar[str] = "tags"

    def label_tags(self, image: np.ndarray, class_ids: tuple[int, ...]) -> list[TagMask]:
        """One :class:`TagMask` per tagged class of ``image``; never one for a class not tagged."""
        raise NotImplementedError

    def predict(self, image: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray) -> list[TeacherOutput]:
        raise WeaksegError(f"teacher {self.name!r} labels from image-level tags, not from boxes")


TeacherFactory = Callable[..., Teacher]
_TEACHERS: dict[str, tuple[TeacherFactory, str]] = {}


def register_teacher(name: str, help: str) -> Callable[[type[Teacher]], type[Teacher]]:
    def wrap(cls: type[Teacher]) -> type[Teacher]:
        cls.name = name
        _TEACHERS[name] = (cls, help)
        return cls

    return wrap


def teacher_names() -> dict[str, str]:
    """Registered teachers and a one-line description of each."""
    _load_builtin()
    return {name: help for name, (_, help) in sorted(_TEACHERS.items())}


def create_teacher(name: str, **config: Any) -> Teacher:
    """Build a registered teacher from its name and keyword configuration."""
    _load_builtin()
    if name not in _TEACHERS:
        raise WeaksegError(f"unknown teacher {name!r}; choose one of: {', '.join(sorted(_TEACHERS))}")
    factory, _ = _TEACHERS[name]
    try:
        return factory(**config)
    except (TypeError, ValueError) as exc:
        raise WeaksegError(f"teacher {name!r}: bad option ({exc})") from None


#: Entry-point group of teachers defined outside this package layer: the ``student`` teacher lives in
#: :mod:`weakseg.inference.teacher` (above this layer, which must not import it) and is declared in
#: ``pyproject.toml``; other packages can add theirs the same way.
ENTRY_POINT_GROUP = "weakseg.teachers"


def _load_builtin() -> None:
    from importlib.metadata import entry_points

    from weakseg.teachers import box_fill, contrast, fusion, grabcut, sam  # noqa: F401

    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name not in _TEACHERS:
            point.load()  # importing its module registers it (@register_teacher)
