"""The contrast teacher on hand-made scenes: polarity, thin strokes, flat boxes, borders, colour."""

from __future__ import annotations

import numpy as np
import pytest

from weakseg.errors import WeaksegError
from weakseg.teachers import create_teacher

SHAPE = (80, 96)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _surface(seed: int = 0, shape: tuple[int, int] = SHAPE, noise: float = 5.0) -> np.ndarray:
    """A noisy flat surface (float, so defects can be added before the cast to uint8)."""
    rng = np.random.default_rng(seed)
    return rng.normal(120, noise, shape)


def _u8(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0, 255).astype(np.uint8)


def _disc(radius: int, centre: tuple[int, int] = (40, 48), shape: tuple[int, int] = SHAPE) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _tight_box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=float)


@pytest.mark.parametrize("value", [70, 180])  # a darker and a brighter defect
def test_disc_of_either_polarity_is_recovered(value: int) -> None:
    image = _surface()
    disc = _disc(7)
    image[disc] = value
    [pm] = create_teacher("contrast").label(_u8(image), _tight_box(disc), np.array([1]))
    assert _iou(pm.mask, disc) > 0.8
    assert pm.confidence > 0.5


def test_disc_in_a_loose_box_is_not_the_box() -> None:
    image = _surface(1)
    disc = _disc(6)
    image[disc] -= 40
    box = np.array([[30, 22, 66, 58]], dtype=float)  # three times the disc's width
    [pm] = create_teacher("contrast").label(_u8(image), box, np.array([1]))
    assert _iou(pm.mask, disc) > 0.8
    assert pm.fill_ratio < 0.2


@pytest.mark.parametrize("contrast", [15, 40])  # faint and strong strokes are both kept thin
def test_thin_line_in_a_large_box_beats_box_fill(contrast: int) -> None:
    image = _surface(2)
    line = np.zeros(SHAPE, dtype=bool)
    for x in range(10, 86):
        y = 20 + (x - 10) * 40 // 76
        line[y : y + 3, x] = True
    image[line] -= contrast
    box = _tight_box(line)
    [pm] = create_teacher("contrast").label(_u8(image), box, np.array([1]))
    box_mask = np.zeros(SHAPE, dtype=bool)
    box_mask[20:63, 10:86] = True
    assert _iou(box_mask, line) < 0.1  # what box fill would give
    assert _iou(pm.mask, line) > 0.5


def test_flat_box_gives_an_empty_mask() -> None:
    image = np.full((40, 40), 100, dtype=np.uint8)  # the ring's MAD is 0
    [pm] = create_teacher("contrast").label(image, np.array([[10, 10, 20, 20]]), np.array([1]))
    assert pm.empty and pm.quality == 0.0 and pm.confidence == 0.0


def test_noise_only_box_gives_an_empty_or_weak_mask() -> None:
    image = _u8(_surface(3))
    [pm] = create_teacher("contrast").label(image, np.array([[30, 30, 60, 50]]), np.array([1]))
    assert pm.empty or pm.quality < 0.2


def test_on_empty_box_falls_back_to_the_box() -> None:
    image = np.full((40, 40), 100, dtype=np.uint8)
    box = np.array([[10, 10, 20, 20]], dtype=float)
    [filled] = create_teacher("contrast", on_empty="box").label(image, box, np.array([1]))
    assert filled.mask[10:20, 10:20].all() and filled.mask.sum() == 100
    assert filled.quality < 0.5  # flagged by its low score
    with pytest.raises(WeaksegError, match="on_empty"):
        create_teacher("contrast", on_empty="maybe")


def test_box_at_the_image_border() -> None:
    image = _surface(4)
    corner = np.zeros(SHAPE, dtype=bool)
    corner[0:8, 0:10] = True  # the ring lies on two sides only
    image[corner] = 50
    edge = _disc(6, centre=(40, 95))  # cut by the right border
    image[edge] = 190
    boxes = np.concatenate([_tight_box(corner), _tight_box(edge)])
    out = create_teacher("contrast").label(_u8(image), boxes, np.array([1, 2]))
    assert _iou(out[0].mask, corner) > 0.8
    assert _iou(out[1].mask, edge) > 0.8


@pytest.mark.parametrize("box", [[50, 50, 51, 52], [20, 30, 23, 33], [40, 10, 41, 70]])
def test_tiny_boxes_do_not_crash_and_stay_inside(box: list[int]) -> None:
    image = _surface(5)
    image[31, 21] = 30  # a one-pixel pit in the 3x3 box
    [pm] = create_teacher("contrast").label(_u8(image), np.array([box], dtype=float), np.array([1]))
    outside = np.ones(SHAPE, dtype=bool)
    outside[box[1] : box[3], box[0] : box[2]] = False
    assert pm.mask.shape == SHAPE and not (pm.mask & outside).any()
    assert 0.0 <= pm.confidence <= 1.0


def test_boxes_partly_or_wholly_outside_the_image() -> None:
    image = _u8(_surface(6))
    boxes = np.array([[-5, -5, 4, 4], [90, 70, 120, 100], [200, 200, 210, 210]], dtype=float)
    out = create_teacher("contrast").label(image, boxes, np.array([1, 1, 1]))
    assert len(out) == 3 and out[2].empty


def test_colour_matches_gray_on_a_gray_scene_and_works_on_colour() -> None:
    image = _surface(7)
    disc = _disc(6)
    image[disc] = 60
    gray = _u8(image)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    teacher = create_teacher("contrast")
    box = _tight_box(disc)
    [a] = teacher.label(gray, box, np.array([1]))
    [b] = teacher.label(rgb, box, np.array([1]))
    assert np.array_equal(a.mask, b.mask) and a.confidence == b.confidence
    tinted = rgb.astype(float) * np.array([1.0, 0.9, 0.7])  # a coloured surface, a dark defect
    [c] = teacher.label(_u8(tinted), box, np.array([1]))
    assert _iou(c.mask, disc) > 0.8


def test_same_output_twice() -> None:
    image = _surface(8)
    image[_disc(5, centre=(20, 20))] -= 40
    image[50:53, 30:80] += 30
    boxes = np.array([[14, 14, 27, 27], [30, 50, 80, 53]], dtype=float)
    teacher = create_teacher("contrast")
    first = teacher.label(_u8(image), boxes, np.array([1, 2]))
    second = create_teacher("contrast").label(_u8(image), boxes, np.array([1, 2]))
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a.mask, b.mask) and a.confidence == b.confidence


def test_other_boxes_are_left_out_of_the_ring() -> None:
    image = _surface(9)
    image[20:50, 20:39] = 60  # two dark neighbours covering most of the middle box's ring
    image[20:50, 51:70] = 60
    image[30:40, 40:50] = 85  # darker than the surface, brighter than the neighbours
    middle = np.zeros(SHAPE, dtype=bool)
    middle[30:40, 40:50] = True
    boxes = np.array([[40, 30, 50, 40], [20, 20, 39, 50], [51, 20, 70, 50]], dtype=float)
    [pm, *_] = create_teacher("contrast").label(_u8(image), boxes, np.array([1, 1, 1]))
    assert _iou(pm.mask, middle) > 0.7
    [polluted, *_] = create_teacher("contrast", exclude_boxes=False).label(
        _u8(image), boxes, np.array([1, 1, 1])
    )
    assert _iou(polluted.mask, middle) < 0.5


def test_textured_region_filling_its_box_returns_the_box() -> None:
    image = _surface(10, shape=(120, 120))
    rng = np.random.default_rng(11)
    image[30:90, 30:90] += rng.normal(0, 12, (60, 60))  # rougher, not darker: an uneven patch
    box = np.array([[30, 30, 90, 90]], dtype=float)
    [pm] = create_teacher("contrast").label(_u8(image), box, np.array([1]))
    assert pm.fill_ratio == 1.0 and pm.confidence == 0.5
    [pm] = create_teacher("contrast", box_spread=0).label(_u8(image), box, np.array([1]))
    assert pm.fill_ratio < 0.7  # switched off: only the pixels that stand out


def test_config_hash_follows_options() -> None:
    base = create_teacher("contrast")
    assert base.config_hash() == create_teacher("contrast").config_hash()
    for option in ({"z_min": 2.5}, {"hat_px": 11}, {"exclude_boxes": False}, {"box_spread": 0.0}):
        assert create_teacher("contrast", **option).config_hash() != base.config_hash()
