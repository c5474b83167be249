"""Image files: discovery, safe path resolution, header reads and full decode checks.

OpenCV's ``imread`` returns ``None`` on failure without saying why; everything here raises a
:class:`DataError` that names the file instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from weakseg.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def iter_images(folder: Path, *, exclude: tuple[str, ...] = ()) -> Iterator[Path]:
    """Image files below ``folder`` (any case of extension), sorted for determinism.

    ``exclude`` lists folder names (relative to ``folder``'s children) whose contents are skipped.
    """
    for path in sorted(folder.rglob("*")):
        rel_parts = path.relative_to(folder).parts
        if any(part.startswith(".") for part in rel_parts):
            continue
        if exclude and rel_parts and rel_parts[0] in exclude:
            continue
        if is_image_file(path):
            yield path


def relative_name(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def resolve_inside(root: Path, file_name: str, *, source: str | Path | None = None) -> Path:
    """``root / file_name``, refusing names that escape ``root`` (``../../etc/passwd``, absolute paths)."""
    where = source if source is not None else file_name
    if not file_name or Path(file_name).is_absolute() or file_name.startswith(("/", "\\")):
        raise DataError(where, f"image path {file_name!r} must be relative to the dataset root {root}")
    root_resolved = root.resolve()
    candidate = (root / file_name).resolve()
    if not candidate.is_relative_to(root_resolved):
        raise DataError(where, f"image path {file_name!r} escapes the dataset root {root}")
    return root / file_name


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the file header, without decoding the pixels."""
    if not path.is_file():
        raise DataError(path, "image file is missing")
    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(path, f"cannot read image: {exc}") from None


def check_image(path: Path) -> tuple[int, int]:
    """Decode every pixel (catches truncated files) and return ``(width, height)``."""
    if not path.is_file():
        raise DataError(path, "image file is missing")
    try:
        with Image.open(path) as img:
            img.load()
            return img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"image is unreadable or truncated: {exc}") from None


def read_image(path: Path) -> np.ndarray:
    """Decode an image to ``uint8``: ``(H, W)`` for grayscale, ``(H, W, 3)`` RGB otherwise."""
    if not path.is_file():
        raise DataError(path, "image file is missing")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("L", "1", "P") and img.mode != "P":
                return np.asarray(img.convert("L"))
            if img.mode in ("I;16", "I;16B", "I"):
                arr = np.asarray(img).astype(np.float32)
                top = float(arr.max()) or 1.0
                return (arr / top * 255.0).round().astype(np.uint8)
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"image is unreadable or truncated: {exc}") from None


def read_label_png(path: Path) -> np.ndarray:
    """Read a mask PNG keeping its raw values: palette indices stay indices (OpenCV would map colours)."""
    if not path.is_file():
        raise DataError(path, "mask file is missing")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "P":
                return np.asarray(img)  # indices, not colours
            if img.mode in ("RGB", "RGBA"):
                arr = np.asarray(img.convert("RGB"))
                if not (
                    np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])
                ):
                    raise DataError(
                        path,
                        "mask is a colour image; save masks as single-channel or palette PNGs whose "
                        "values are class ids",
                    )
                return arr[..., 0].copy()
            if img.mode in ("I;16", "I;16B", "I"):
                return np.asarray(img).astype(np.int32)
            return np.asarray(img.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(path, f"mask is unreadable or truncated: {exc}") from None
