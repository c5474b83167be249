"""Deterministic synthetic industrial-defect images: the project's own demo and test data.

The real datasets are research-only and cannot ship with the package, yet the demo, the tests and the
docs need images whose defects behave like the real ones (DATA.md): thin dark cracks that are long and
sparse (CrackForest), small blowholes (Magnetic Tile), bright scratches and faint, soft-edged stains,
all on textured, unevenly lit surfaces with sensor noise. Contrast is low to moderate and polarity
varies, so plain thresholding is not trivially perfect while a box-based teacher still has a signal.

Everything is drawn with numpy/OpenCV from per-image random streams (``SeedSequence(seed).spawn``)
and PNGs carry no metadata, so the same seed gives byte-identical files.

Output, the "mask folder" layout::

    out/images/<name>.png   8-bit PNG, grayscale ('L') or RGB
    out/masks/<name>.png    uint8, value = class id (0 background)
    out/classes.txt         class names in id order
    out/tags.csv            image,tags  (';'-joined class names; empty = defect-free)
    out/dataset.json        how the set was made (seed, size, class map, generator version)
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.signal import lfilter

from weakseg.annotations.masks import DEFAULT_MIN_AREA, components, encode
from weakseg.annotations.schema import ORIGIN_GT_MASK, AnnotationSet, ClassMap, ImageRecord, Instance
from weakseg.errors import DataError
from weakseg.utils.atomic import atomic_directory, atomic_write_json, atomic_write_text

#: Defect classes in id order (id = index + 1).
CLASSES: tuple[str, ...] = ("crack", "blob", "scratch", "stain")
#: Bumped whenever the pixels for a given seed change, so stale demo sets can be recognised.
GENERATOR_VERSION = 1
#: Format name of the returned :class:`AnnotationSet`: the mask-folder reader's, since that is how the
#: folder reads back (``dataset.json`` records that it is synthetic).
FORMAT = "masks"

# Broad, faint defects are drawn first so that thin ones stay visible (and labelled) on top of them.
_DRAW_ORDER = {"stain": 0, "blob": 1, "scratch": 2, "crack": 3}
# Relative frequency of the extra defects (the first defect of each image cycles through CLASSES).
_EXTRA_P = np.array([0.3, 0.3, 0.25, 0.15])
_SURFACES = ("cast", "brushed", "fabric", "asphalt")
# RGB tints of coloured surfaces: steel, brass, green lacquer, terracotta, blue fabric, concrete.
_TINTS = np.array(
    [
        [0.92, 0.98, 1.10],
        [1.18, 1.02, 0.70],
        [0.78, 1.15, 0.88],
        [1.20, 0.92, 0.78],
        [0.80, 0.95, 1.30],
        [1.05, 1.02, 0.93],
    ],
    dtype=np.float32,
)
_SHIFT = 4  # sub-pixel bits for OpenCV drawing
_MAX_ATTEMPTS = 6


@dataclass(frozen=True)
class _Defect:
    """One rendered defect: a signed luminance change, its ground-truth mask and its colour."""

    class_name: str
    shade: np.ndarray  # float32 (H, W), signed change in [0, 1] intensity units
    mask: np.ndarray  # bool (H, W)
    colour: np.ndarray  # float32 (3,), RGB weights of the change (used on colour images)


# --------------------------------------------------------------------------- public API


def generate_synthetic(
    out: str | Path,
    *,
    n_images: int = 48,
    size: tuple[int, int] = (192, 192),
    seed: int = 0,
    negative_fraction: float = 0.25,
    color_fraction: float = 0.5,
    overwrite: bool = False,
) -> AnnotationSet:
    """Write a synthetic defect dataset to ``out`` and return its annotations.

    ``size`` is ``(height, width)``. The folder is built aside and moved into place only when
    complete, so a failure leaves no half-written dataset.
    """
    _check_args(n_images, size, negative_fraction, color_fraction)
    size = (int(size[0]), int(size[1]))
    out = Path(out)
    class_map = ClassMap(CLASSES)
    plans = _plan(n_images, seed, negative_fraction, color_fraction)
    width = max(4, len(str(n_images - 1)))
    records: list[ImageRecord] = []
    with atomic_directory(out, overwrite=overwrite) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        for i, (rng, defects, color) in enumerate(plans):
            name = f"syn_{i:0{width}d}.png"
            image, label = render_synthetic_image(rng, size, defects, color=color)
            (tmp / "images" / name).write_bytes(_png(image))
            (tmp / "masks" / name).write_bytes(_png(label))
            records.append(_record(name, label, class_map, source=out / "masks" / name))
        _write_metadata(tmp, records, class_map, seed, size, negative_fraction, color_fraction)
    return AnnotationSet(out / "images", class_map, records, format=FORMAT)


def render_synthetic_image(
    rng: np.random.Generator, size: tuple[int, int], defects: Sequence[str], *, color: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One image and its label map (uint8 class ids) holding ``defects`` (class names).

    Returns ``(H, W)`` uint8 for grayscale, ``(H, W, 3)`` RGB for ``color``. Components under
    :data:`DEFAULT_MIN_AREA` pixels are cleared from the label map, matching how instances are derived.
    When the first defect (the one that guarantees every class appears) ends up missing from the labels
    (overdrawn or clipped), the image is redrawn from the same stream, so it stays deterministic.
    """
    unknown = sorted(set(defects) - set(CLASSES))
    if unknown:
        raise ValueError(f"unknown synthetic defect class(es) {unknown}; known: {', '.join(CLASSES)}")
    for _ in range(_MAX_ATTEMPTS):
        image, label = _render_once(rng, size, defects, color=color)
        present = set(np.unique(label).tolist())
        if not defects or CLASSES.index(defects[0]) + 1 in present:
            break
    return image, label


# --------------------------------------------------------------------------- planning


def _check_args(
    n_images: int, size: tuple[int, int], negative_fraction: float, color_fraction: float
) -> None:
    if n_images < 1:
        raise DataError(None, f"n_images must be at least 1, got {n_images}")
    if len(size) != 2 or min(size) < 32:
        raise DataError(None, f"size must be (height, width) with both >= 32, got {size}")
    for label, value in (("negative_fraction", negative_fraction), ("color_fraction", color_fraction)):
        if not 0.0 <= value <= 1.0:
            raise DataError(None, f"{label} must be in [0, 1], got {value}")


def _plan(
    n_images: int, seed: int, negative_fraction: float, color_fraction: float
) -> list[tuple[np.random.Generator, list[str], bool]]:
    """Per image: its own random stream, the defect classes to draw, and grayscale/colour.

    Exact counts (not coin flips) of negatives and colour images keep small sets balanced; the first
    defect of the k-th defect image is ``CLASSES[k % 4]`` so every class appears in every set.
    """
    plan_seq, *image_seqs = np.random.SeedSequence(seed).spawn(n_images + 1)
    plan_rng = np.random.default_rng(plan_seq)
    negatives = set(plan_rng.permutation(n_images)[: round(n_images * negative_fraction)].tolist())
    colours = set(plan_rng.permutation(n_images)[: round(n_images * color_fraction)].tolist())
    plans = []
    k = 0
    for i, seq in enumerate(image_seqs):
        rng = np.random.default_rng(seq)
        defects: list[str] = []
        if i not in negatives:
            extra = rng.choice(len(CLASSES), size=int(rng.integers(0, 3)), p=_EXTRA_P)
            defects = [CLASSES[k % len(CLASSES)], *(CLASSES[j] for j in extra)]
            k += 1
        plans.append((rng, defects, i in colours))
    return plans


# --------------------------------------------------------------------------- rendering


def _render_once(
    rng: np.random.Generator, size: tuple[int, int], defects: Sequence[str], *, color: bool
) -> tuple[np.ndarray, np.ndarray]:
    h, w = size
    grid = np.mgrid[0:h, 0:w].astype(np.float32)  # (yy, xx)
    image = _surface(rng, size)[..., None]
    if color:
        image = _colourise(rng, image)
    label = np.zeros(size, np.uint8)
    order = sorted(defects, key=lambda name: _DRAW_ORDER[name])
    for name in order:
        defect = _place(rng, grid, name, label)
        weights = (defect.colour if color else np.ones(1, np.float32))[None, None, :]
        image += defect.shade[..., None] * weights
        label[defect.mask] = CLASSES.index(name) + 1
    image = image * _illumination(rng, grid)[..., None] + _sensor_noise(rng, image.shape)
    pixels = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return (pixels if color else pixels[..., 0]), _drop_specks(label)


def _place(rng: np.random.Generator, grid: np.ndarray, name: str, label: np.ndarray) -> _Defect:
    """Draw a defect, retrying a few times if it would hide one already drawn or be hidden by it.

    Stains are backgrounds for other defects and may be covered; two small defects on top of each
    other would teach nothing but ambiguous labels.
    """
    occupied = (label > 0) & (label != CLASSES.index("stain") + 1)
    n_occupied = int(occupied.sum())
    for _ in range(_MAX_ATTEMPTS):
        defect = _DRAWERS[name](rng, grid)
        if n_occupied == 0:
            break
        shared = int((defect.mask & occupied).sum())
        if shared <= 0.1 * max(1, min(n_occupied, int(defect.mask.sum()))):  # crossing is fine, hiding is not
            break
    return defect


def _value_noise(
    rng: np.random.Generator, size: tuple[int, int], *, cell: float, octaves: int = 4, channels: int = 0
) -> np.ndarray:
    """Multi-octave value noise, standardised to zero mean and unit std (per channel)."""
    h, w = size
    shape = (h, w, channels) if channels else (h, w)
    total = np.zeros(shape, np.float32)
    amp = 1.0
    for _ in range(octaves):
        gh, gw = max(2, round(h / cell) + 2), max(2, round(w / cell) + 2)
        coarse = rng.random((gh, gw, channels) if channels else (gh, gw), dtype=np.float32)
        total += amp * cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).reshape(shape)
        amp *= 0.5
        cell = max(1.0, cell / 2)
    axes = (0, 1)
    return (total - total.mean(axis=axes)) / (total.std(axis=axes) + 1e-6)


def _surface(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Base level plus one of several industrial textures, luminance in roughly [0.2, 0.8]."""
    kind = _SURFACES[rng.integers(len(_SURFACES))]
    level = rng.uniform(0.35, 0.65)
    texture = {"cast": _cast, "brushed": _brushed, "fabric": _fabric, "asphalt": _asphalt}[kind](rng, size)
    return (level + texture).astype(np.float32)


def _colourise(rng: np.random.Generator, luminance: np.ndarray) -> np.ndarray:
    """Tint a ``(H, W, 1)`` surface with a material colour plus faint independent chroma noise."""
    tint = _TINTS[rng.integers(len(_TINTS))] + rng.normal(0, 0.04, 3).astype(np.float32)
    size = luminance.shape[:2]
    return luminance * tint + 0.015 * _value_noise(rng, size, cell=size[0] / 4, octaves=2, channels=3)


def _cast(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Sintered / cast material (Magnetic Tile): cloudy low-frequency shading and fine grain."""
    clouds = _value_noise(rng, size, cell=min(size) / 5, octaves=5)
    grain = cv2.GaussianBlur(rng.standard_normal(size, dtype=np.float32), (0, 0), 0.7)
    return rng.uniform(0.03, 0.06) * clouds + 0.05 * grain


def _brushed(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Brushed metal: fine streaks along one direction."""
    h, w = size
    side = int(np.ceil(np.hypot(h, w))) + 2
    noise = rng.standard_normal((side, side), dtype=np.float32)
    streaks = cv2.GaussianBlur(noise, (0, 0), sigmaX=rng.uniform(8, 20), sigmaY=0.6)
    angle = rng.choice([0.0, 90.0]) + rng.uniform(-25, 25)
    rot = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
    rot[:, 2] -= ((side - w) / 2, (side - h) / 2)
    streaks = cv2.warpAffine(streaks, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    streaks = (streaks - streaks.mean()) / (streaks.std() + 1e-6)
    return rng.uniform(0.03, 0.06) * streaks + 0.025 * _value_noise(rng, size, cell=min(size) / 3, octaves=3)


def _fabric(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Woven / embossed periodic pattern, slightly warped so it is not a perfect lattice."""
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(4.0, 9.0)
    warp = 1.5 * _value_noise(rng, size, cell=min(size) / 4, octaves=2)
    u = xx * np.cos(theta) + yy * np.sin(theta) + warp
    v = -xx * np.sin(theta) + yy * np.cos(theta) + warp
    weave = np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period)
    clouds = _value_noise(rng, size, cell=min(size) / 4, octaves=3)
    return rng.uniform(0.03, 0.055) * weave + 0.025 * clouds


def _asphalt(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Road-like speckle (CrackForest): pebbles of both polarities that thresholding confuses with cracks."""
    speckle = cv2.GaussianBlur(rng.standard_normal(size, dtype=np.float32), (0, 0), rng.uniform(0.8, 1.4))
    speckle = speckle / (speckle.std() + 1e-6)
    clouds = _value_noise(rng, size, cell=min(size) / 3, octaves=3)
    return rng.uniform(0.045, 0.07) * speckle + 0.03 * clouds


def _illumination(rng: np.random.Generator, grid: np.ndarray) -> np.ndarray:
    """Slow multiplicative shading: a tilted plane and a vignette, as from an off-axis lamp."""
    yy, xx = grid
    h, w = yy.shape
    gy, gx = rng.normal(0, 0.15, 2)
    plane = gy * (yy / h - 0.5) + gx * (xx / w - 0.5)
    cy, cx = rng.uniform(0.3, 0.7, 2)
    vignette = rng.uniform(0.0, 0.25) * ((yy / h - cy) ** 2 + (xx / w - cx) ** 2)
    return (1.0 + plane - vignette).astype(np.float32)


def _sensor_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Gaussian read noise, mostly shared across channels as in a demosaiced colour sensor."""
    sigma = rng.uniform(0.008, 0.022)
    shared = rng.standard_normal(shape[:2], dtype=np.float32)[..., None]
    own = rng.standard_normal(shape, dtype=np.float32)
    return sigma * (0.85 * shared + 0.5 * own)


def _drop_specks(label: np.ndarray) -> np.ndarray:
    """Clear per-class components smaller than the instance threshold, so masks equal instances."""
    for class_id in np.unique(label):
        if class_id == 0:
            continue
        layer = label == class_id
        kept = np.zeros_like(layer)
        for _, comp in components(layer, DEFAULT_MIN_AREA):
            kept |= comp
        label[layer & ~kept] = 0
    return label


# --------------------------------------------------------------------------- defects


def _polarity(rng: np.random.Generator, p_dark: float) -> float:
    return -1.0 if rng.random() < p_dark else 1.0


def _draw_polylines(
    shape: tuple[int, int], paths: Sequence[tuple[np.ndarray, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased coverage and ground truth of open polylines given as ``(points, thickness)``.

    The mask is coverage >= 0.5 joined with the hard 8-connected raster, so a one-pixel crack stays one
    connected instance instead of breaking up where anti-aliasing splits a pixel between two.
    """
    soft = np.zeros(shape, np.uint8)
    hard = np.zeros(shape, np.uint8)
    for points, thickness in paths:
        fixed = [np.round(points * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)]
        cv2.polylines(soft, fixed, False, 255, thickness, cv2.LINE_AA, _SHIFT)
        cv2.polylines(hard, fixed, False, 1, thickness, cv2.LINE_8, _SHIFT)
    alpha = soft.astype(np.float32) / 255.0
    return alpha, (alpha >= 0.5) | (hard > 0)


def _walk(rng: np.random.Generator, start: np.ndarray, heading: float, length: float) -> np.ndarray:
    """A jagged random walk that keeps its overall direction, like a fatigue crack."""
    step = 2.5
    n = max(3, int(length / step))
    wiggle = lfilter([1.0], [1.0, -0.6], rng.normal(0, 0.35, n))  # short-range jitter
    drift = np.cumsum(rng.normal(0, 0.06, n))  # slow bending
    angles = heading + wiggle + drift
    steps = step * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return np.vstack([start, start + np.cumsum(steps, axis=0)]).astype(np.float32)


def _crack(rng: np.random.Generator, grid: np.ndarray) -> _Defect:
    """Long, thin (1-3 px), sparse, usually dark, sometimes branching; intensity varies along it."""
    h, w = grid.shape[1:]
    main = _walk(rng, np.zeros(2), rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.1) * max(h, w))
    centre = rng.uniform([0.25 * w, 0.25 * h], [0.75 * w, 0.75 * h])
    main += (centre - main.mean(axis=0)).astype(np.float32)
    thickness = int(rng.choice([1, 2, 3], p=[0.35, 0.45, 0.2]))
    paths = [(main, thickness)]
    if rng.random() < 0.5:
        at = main[rng.integers(len(main) // 4, 3 * len(main) // 4)]
        heading = rng.uniform(0, 2 * np.pi)
        paths.append((_walk(rng, at, heading, rng.uniform(0.15, 0.4) * max(h, w)), max(1, thickness - 1)))
    alpha, mask = _draw_polylines((h, w), paths)
    fade = 0.55 + 0.45 * np.clip(0.5 + 0.3 * _value_noise(rng, (h, w), cell=24, octaves=2), 0, 1)
    contrast = rng.uniform(0.15, 0.35) * _polarity(rng, 0.85)
    return _Defect("crack", contrast * alpha * fade, mask, np.ones(3, np.float32))


def _scratch(rng: np.random.Generator, grid: np.ndarray) -> _Defect:
    """A nearly straight thin line, usually brighter (it catches the light), with a slight bow."""
    h, w = grid.shape[1:]
    length = rng.uniform(0.3, 0.75) * min(h, w)
    angle = rng.uniform(0, np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    centre = rng.uniform([0.25 * w, 0.25 * h], [0.75 * w, 0.75 * h])
    t = np.linspace(-0.5, 0.5, 24)[:, None]
    bow = rng.uniform(-0.08, 0.08) * length * (1 - 4 * t**2)
    points = (centre + t * length * direction + bow * normal).astype(np.float32)
    alpha, mask = _draw_polylines((h, w), [(points, int(rng.choice([1, 2], p=[0.6, 0.4])))])
    fade = 0.6 + 0.4 * np.clip(0.5 + 0.3 * _value_noise(rng, (h, w), cell=32, octaves=2), 0, 1)
    contrast = rng.uniform(0.12, 0.28) * _polarity(rng, 0.3)
    return _Defect("scratch", contrast * alpha * fade, mask, np.ones(3, np.float32))


def _blob(rng: np.random.Generator, grid: np.ndarray) -> _Defect:
    """A blowhole: a small, slightly irregular ellipse, deepest in the middle, with a faint rim."""
    yy, xx = grid
    h, w = yy.shape
    a = rng.uniform(2.8, 9.0)
    b = a * rng.uniform(0.55, 1.0)
    cx, cy = rng.uniform(a + 4, w - a - 4), rng.uniform(a + 4, h - a - 4)
    theta = rng.uniform(0, np.pi)
    dx, dy = xx - cx, yy - cy
    u, v = dx * np.cos(theta) + dy * np.sin(theta), -dx * np.sin(theta) + dy * np.cos(theta)
    phi = np.arctan2(v, u)
    wobble = 1.0 + sum(rng.normal(0, 0.06) * np.cos(k * phi + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4))
    r = np.sqrt((u / a) ** 2 + (v / b) ** 2) / wobble
    radius = np.sqrt(a * b)
    edge = rng.uniform(0.6, 1.4)  # px
    alpha = _smoothstep(0.5 + (1.0 - r) * radius / (2 * edge))
    depth = alpha * (0.7 + 0.3 * np.clip(1.0 - r**2, 0, 1))
    rim = np.exp(-(((r - 1.0) * radius - edge) ** 2) / 1.5)
    contrast = rng.uniform(0.15, 0.35) * _polarity(rng, 0.75)
    shade = contrast * (depth - rng.uniform(0.1, 0.3) * rim)
    return _Defect("blob", shade.astype(np.float32), r <= 1.0, np.ones(3, np.float32))


def _stain(rng: np.random.Generator, grid: np.ndarray) -> _Defect:
    """A large, faint, soft-edged irregular region; labelled where it is clearly visible (alpha >= 0.5)."""
    yy, xx = grid
    h, w = yy.shape
    radius = rng.uniform(0.12, 0.28) * min(h, w)
    cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
    stretch = rng.uniform(0.6, 1.0)
    theta = rng.uniform(0, np.pi)
    dx, dy = xx - cx, yy - cy
    u, v = dx * np.cos(theta) + dy * np.sin(theta), (-dx * np.sin(theta) + dy * np.cos(theta)) / stretch
    warp = _value_noise(rng, (h, w), cell=radius * 0.8, octaves=3)
    s = 1.0 - np.sqrt(u**2 + v**2) / radius + 0.22 * warp
    edge = rng.uniform(0.15, 0.3)
    alpha = _smoothstep(0.5 + s / (2 * edge))
    mottling = 0.8 + 0.2 * np.clip(0.5 + 0.3 * _value_noise(rng, (h, w), cell=8, octaves=2), 0, 1)
    sign = _polarity(rng, 0.6)
    contrast = rng.uniform(0.07, 0.15) * sign
    colour = _stain_colour(rng, dark=sign < 0)
    return _Defect("stain", (contrast * alpha * mottling).astype(np.float32), s >= 0.0, colour)


def _stain_colour(rng: np.random.Generator, *, dark: bool) -> np.ndarray:
    """RGB weights of a stain: dark ones lose blue first (rust, oil), bright ones are whitish residue."""
    options = [[0.55, 0.95, 1.5], [1.25, 1.0, 0.75]] if dark else [[1.0, 1.0, 1.0], [1.1, 1.05, 0.85]]
    colour = np.asarray(options[rng.integers(len(options))], np.float32)
    return colour / colour.mean()


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return (x * x * (3.0 - 2.0 * x)).astype(np.float32)


_DRAWERS: dict[str, Callable[[np.random.Generator, np.ndarray], _Defect]] = {
    "crack": _crack,
    "blob": _blob,
    "scratch": _scratch,
    "stain": _stain,
}


# --------------------------------------------------------------------------- output


def _png(pixels: np.ndarray) -> bytes:
    """Encode without timestamps or other metadata, so equal pixels give equal bytes."""
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:  # pragma: no cover - OpenCV only fails here on invalid arrays
        raise DataError(None, "could not encode a synthetic image as PNG")
    return buf.tobytes()


def _record(name: str, label: np.ndarray, class_map: ClassMap, *, source: Path) -> ImageRecord:
    """Instances are the 8-connected components of each class, as the mask-folder readers derive them."""
    instances = [
        Instance(class_id, box, encode(comp), origin=ORIGIN_GT_MASK)
        for class_id in class_map.ids
        for box, comp in components(label == class_id, DEFAULT_MIN_AREA)
    ]
    tags = tuple(sorted({inst.class_id for inst in instances}))
    h, w = label.shape
    return ImageRecord(name, w, h, instances, tags=tags, annotated=True, source=str(source))


def _write_metadata(
    folder: Path,
    records: list[ImageRecord],
    class_map: ClassMap,
    seed: int,
    size: tuple[int, int],
    negative_fraction: float,
    color_fraction: float,
) -> None:
    atomic_write_text(folder / "classes.txt", "".join(f"{name}\n" for name in class_map.names))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "tags"])
    for record in records:
        writer.writerow([record.file_name, ";".join(class_map.name(c) for c in record.tags or ())])
    atomic_write_text(folder / "tags.csv", buf.getvalue())
    meta = {
        "generator": "weakseg.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "size": list(size),
        "size_order": "height,width",
        "n_images": len(records),
        "negative_fraction": negative_fraction,
        "color_fraction": color_fraction,
        "class_map": class_map.to_dict(),
        "min_area": DEFAULT_MIN_AREA,
        "layout": {"images": "images/", "masks": "masks/", "classes": "classes.txt", "tags": "tags.csv"},
    }
    atomic_write_json(folder / "dataset.json", meta, indent=2)
