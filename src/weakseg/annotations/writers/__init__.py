"""Writers: an :class:`AnnotationSet` out as a self-contained dataset folder.

Every writer produces ``OUT/images/<file_name>`` (hard links where the filesystem allows, copies
otherwise) next to its annotation files, so the output can be read back on its own. The whole folder
is built in a temporary sibling and moved into place only when complete: a failure never leaves a
half-written dataset.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from weakseg.annotations.schema import AnnotationSet
from weakseg.errors import DataError
from weakseg.utils.atomic import atomic_directory

#: Writes the annotation files for ``ann`` into ``out`` (images are placed by the caller).
Writer = Callable[[AnnotationSet, Path], None]

_WRITERS: dict[str, Writer] = {}


def register_writer(name: str) -> Callable[[Writer], Writer]:
    def wrap(fn: Writer) -> Writer:
        _WRITERS[name] = fn
        return fn

    return wrap


def writer_names() -> list[str]:
    _load_builtin()
    return sorted(_WRITERS)


def write_annotations(
    ann: AnnotationSet, format: str, out: str | Path, *, overwrite: bool = False, copy_images: bool = True
) -> Path:
    """Write ``ann`` as a ``format`` dataset folder at ``out`` (atomically)."""
    _load_builtin()
    if format not in _WRITERS:
        choices = ", ".join(sorted(_WRITERS))
        raise DataError(out, f"unknown output format {format!r}; choose one of: {choices}")
    out = Path(out)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        if copy_images:
            place_images(ann, tmp / "images")
        _WRITERS[format](ann, tmp)
    return out


def place_images(ann: AnnotationSet, images_dir: Path) -> None:
    """Hard-link (or copy) every image of ``ann`` to ``images_dir/<file_name>``."""
    for record in ann.images:
        src = ann.image_path(record)
        dst = images_dir / record.file_name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not src.is_file():
            raise DataError(src, "image file is missing")
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def _load_builtin() -> None:
    from weakseg.annotations.writers import coco, mask_png, yolo  # noqa: F401
