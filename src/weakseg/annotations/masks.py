"""Mask <-> RLE <-> polygon <-> box conversions, all on pycocotools and OpenCV.

These are the only places where pixel masks change representation, so every reader and writer agrees
on the box convention (half-open pixel boxes, see :mod:`weakseg.annotations.schema`).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from weakseg.annotations.schema import Box, ImageRecord, Rle

#: Components smaller than this many pixels are anti-aliasing specks, not defects (DATA.md).
DEFAULT_MIN_AREA = 10


def encode(mask: np.ndarray) -> Rle:
    """Binary ``(H, W)`` mask to a JSON-ready compressed RLE."""
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode(rle: Rle) -> np.ndarray:
    """RLE (compressed string or uncompressed list counts) to a ``bool`` ``(H, W)`` mask."""
    return mask_utils.decode(_to_coco_rle(rle)).astype(bool)


def area(rle: Rle) -> int:
    return int(mask_utils.area(_to_coco_rle(rle)))


def rle_size(rle: Rle) -> tuple[int, int]:
    """``(height, width)`` of an RLE."""
    h, w = rle["size"]
    return int(h), int(w)


def box_of(mask: np.ndarray) -> Box | None:
    """Tight half-open box of the ``True`` pixels, or ``None`` for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def rle_box(rle: Rle) -> Box | None:
    """Tight box of an RLE without decoding it."""
    if area(rle) == 0:
        return None
    x, y, w, h = mask_utils.toBbox(_to_coco_rle(rle)).tolist()
    return (x, y, x + w, y + h)


def polygons_to_rle(polygons: Sequence[Sequence[float]], height: int, width: int) -> Rle:
    """COCO polygons (flat ``[x0, y0, x1, y1, ...]`` lists, pixel units) to one merged RLE."""
    polys = [list(map(float, p)) for p in polygons if len(p) >= 6]
    if not polys:
        return encode(np.zeros((height, width), dtype=np.uint8))
    rles = mask_utils.frPyObjects(polys, height, width)
    merged = mask_utils.merge(rles)
    return {"size": [height, width], "counts": merged["counts"].decode("ascii")}


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer outlines of a binary mask along pixel edges, as flat ``[x0, y0, x1, y1, ...]`` polygons.

    Vertices lie on pixel corners, so each polygon's extent is exactly the half-open box of its pixels
    and rasterising it gives the pixels back (holes are filled: YOLO and COCO polygons cannot hold
    them). OpenCV's contours run through pixel centres and lose half a pixel all round, which ruins
    thin cracks.
    """
    m = np.pad(mask.astype(bool), 1)
    fg = m[1:-1, 1:-1]
    nxt: dict[tuple[int, int], list[tuple[int, int]]] = {}
    # Directed edges with the defect on the right (clockwise in image coordinates, y down).
    for dr, dc, start, end in (
        (-1, 0, (0, 0), (1, 0)),  # top edge: left -> right
        (0, 1, (1, 0), (1, 1)),  # right edge: top -> bottom
        (1, 0, (1, 1), (0, 1)),  # bottom edge: right -> left
        (0, -1, (0, 1), (0, 0)),  # left edge: bottom -> top
    ):
        neighbour = m[1 + dr : m.shape[0] - 1 + dr, 1 + dc : m.shape[1] - 1 + dc]
        rows, cols = np.nonzero(fg & ~neighbour)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            nxt.setdefault((c + start[0], r + start[1]), []).append((c + end[0], r + end[1]))
    polygons = []
    while nxt:
        first = next(iter(nxt))
        ring = [first]
        prev_dir = None
        point = first
        while True:
            ends = nxt[point]
            if len(ends) == 1 or prev_dir is None:
                end = ends.pop()
            else:  # a corner shared by two diagonal pixels: turn left so that 8-connected parts stay one ring
                end = min(ends, key=lambda e: _turn(prev_dir, (e[0] - point[0], e[1] - point[1])))
                ends.remove(end)
            if not ends:
                del nxt[point]
            prev_dir = (end[0] - point[0], end[1] - point[1])
            if end == first:
                break
            ring.append(end)
            point = end
        ring = _drop_collinear(ring)
        if _signed_area(ring) > 0:  # clockwise in image coordinates = an outer boundary
            polygons.append([float(v) for xy in ring for v in xy])
    return polygons


def _turn(d_in: tuple[int, int], d_out: tuple[int, int]) -> int:
    """+1 for a right turn (image coordinates), 0 straight, -1 left."""
    return d_in[0] * d_out[1] - d_in[1] * d_out[0]


def _drop_collinear(ring: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    n = len(ring)
    for i, p in enumerate(ring):
        a, b = ring[i - 1], ring[(i + 1) % n]
        if (p[0] - a[0]) * (b[1] - p[1]) - (p[1] - a[1]) * (b[0] - p[0]) != 0:
            out.append(p)
    return out


def _signed_area(ring: list[tuple[int, int]]) -> float:
    xs = np.array([p[0] for p in ring], dtype=float)
    ys = np.array([p[1] for p in ring], dtype=float)
    return 0.5 * float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1)))


def components(mask: np.ndarray, min_area: int = DEFAULT_MIN_AREA) -> list[tuple[Box, np.ndarray]]:
    """8-connected components of a binary mask with at least ``min_area`` pixels.

    Returns ``(box, component_mask)`` pairs in raster order of their top-left pixel.
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    out = []
    for label in range(1, n):
        x, y, w, h, pixels = (int(v) for v in stats[label])
        if pixels < min_area:
            continue
        out.append(((float(x), float(y), float(x + w), float(y + h)), labels == label))
    return out


def _to_coco_rle(rle: Rle) -> dict:
    counts = rle["counts"]
    h, w = rle_size(rle)
    if isinstance(counts, list):  # uncompressed RLE, as COCO stores for crowd regions
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [h, w], "counts": counts}


def label_map(record: ImageRecord, dtype: type[np.integer] = np.uint8) -> np.ndarray:
    """The record's instance masks painted as class ids (0 = background), later instances on top."""
    labels = np.zeros(record.size, dtype=dtype)
    for inst in record.instances:
        if inst.mask is not None:
            labels[decode(inst.mask)] = inst.class_id
    return labels
