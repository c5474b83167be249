"""Mask representation changes: RLE, boxes, components, pixel-exact polygons."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import binary_fill_holes

from weakseg.annotations import masks as mask_ops


def test_encode_decode_roundtrip_and_area() -> None:
    mask = np.zeros((7, 9), dtype=bool)
    mask[1:4, 2:7] = True
    rle = mask_ops.encode(mask)
    assert rle["size"] == [7, 9]
    assert isinstance(rle["counts"], str)
    assert np.array_equal(mask_ops.decode(rle), mask)
    assert mask_ops.area(rle) == 15


def test_box_is_half_open() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:5, 3:8] = True  # rows 2..4, cols 3..7
    assert mask_ops.box_of(mask) == (3.0, 2.0, 8.0, 5.0)
    assert mask_ops.rle_box(mask_ops.encode(mask)) == (3.0, 2.0, 8.0, 5.0)
    assert mask_ops.box_of(np.zeros((3, 3), dtype=bool)) is None


def test_uncompressed_rle_is_read() -> None:
    # column-major runs: 3 zeros, 2 ones, 1 zero in a 2x3 image
    rle = {"size": [2, 3], "counts": [3, 2, 1]}
    expected = np.array([[0, 0, 1], [0, 1, 0]], dtype=bool)
    assert np.array_equal(mask_ops.decode(rle), expected)


def test_components_are_8_connected_and_drop_specks() -> None:
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[2, 2] = mask[3, 3] = mask[4, 4] = 1  # diagonal line: one 8-connected component of 3 px
    mask[10:14, 10:14] = 1  # 16 px
    comps = mask_ops.components(mask, min_area=1)
    assert [box for box, _ in comps] == [(2.0, 2.0, 5.0, 5.0), (10.0, 10.0, 14.0, 14.0)]
    assert [box for box, _ in mask_ops.components(mask, min_area=10)] == [(10.0, 10.0, 14.0, 14.0)]


def test_polygons_from_coco_rasterise() -> None:
    rle = mask_ops.polygons_to_rle([[1, 1, 5, 1, 5, 4, 1, 4]], 6, 8)
    decoded = mask_ops.decode(rle)
    assert decoded[1:4, 1:5].all()
    assert decoded.sum() == 12


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000))
def test_mask_to_polygons_is_pixel_exact(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = np.zeros((30, 40), dtype=np.uint8)
    center = (int(rng.integers(5, 35)), int(rng.integers(5, 25)))
    cv2.ellipse(
        mask,
        center,
        (int(rng.integers(0, 8)), int(rng.integers(0, 8))),
        float(rng.integers(0, 180)),
        0,
        360,
        1,
        -1,
    )
    p0 = (int(rng.integers(0, 40)), int(rng.integers(0, 30)))
    p1 = (int(rng.integers(0, 40)), int(rng.integers(0, 30)))
    cv2.line(mask, p0, p1, 1, 1)  # thin, diagonal: the crack case
    for box, comp in mask_ops.components(mask, min_area=1):
        polygons = mask_ops.mask_to_polygons(comp)
        assert len(polygons) == 1  # one ring per 8-connected component
        xs, ys = np.array(polygons[0][0::2]), np.array(polygons[0][1::2])
        assert (xs.min(), ys.min(), xs.max(), ys.max()) == box
        back = mask_ops.decode(mask_ops.polygons_to_rle(polygons, 30, 40))
        assert np.array_equal(back, binary_fill_holes(comp))


def test_encode_rejects_3d() -> None:
    with pytest.raises(ValueError, match="2-D"):
        mask_ops.encode(np.zeros((2, 2, 3), dtype=np.uint8))
