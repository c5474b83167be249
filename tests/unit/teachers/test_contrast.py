"""The contrast teacher on hand-made scenes: polarity, thin strokes, flat boxes, borders, colour."""

from __future__ import annotations

import numpy as np
import pytest

from weakseg.errors import WeaksegError
from weakseg.teachers import create_teacher


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _surface(seed: int = 0, shape: tuple[int, int] = (80, 96)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(120, 5, shape), 0, 255)


@pytest.mark.parametrize("value", [70, 180])  # darker and brighter defects
def test_disc_of_either_polarity(value: int) -> None:
    image = _surface()
    yy, xx = np.mgrid[:80, :96]
    disc = (yy - 40) ** 2 + (xx - 48) ** 2 <= 49
    image[disc] = value
    [pm] = create_teacher("contrast").label(
        image.astype(np.uint8), np.array([[41, 33, 56, 48]]), np.array([1])
    )
    recall = (pm.mask & disc).sum() / disc.sum()
    precision = (pm.mask & disc).sum() / pm.mask.sum()
    # A wide defect grows into its coarse-scale halo; in a box this tight that reaches the corners.
    assert recall > 0.95 and precision > 0.6
    assert pm.confidence > 0.5
    [pm] = create_teacher("contrast", coarse=0).label(
        image.astype(np.uint8), np.array([[41, 33, 56, 48]]), np.array([1])
    )
    assert _iou(pm.mask, disc) > 0.8  # without region growth the disc itself is found


def test_thin_line_in_a_large_box_beats_box_fill() -> None:
    image = _surface(1)
    line = np.zeros((80, 96), dtype=bool)
    for x in range(10, 86):
        y = 20 + (x * 40) // 76
        line[y : y + 2, x] = True
    image[line] -= 30
    box = np.array([[10, 20, 86, 62]], dtype=float)
    [pm] = create_teacher("contrast").label(image.astype(np.uint8), box, np.array([1]))
    box_mask = np.zeros_like(line)
    box_mask[20:62, 10:86] = True
    assert _iou(pm.mask, line) > 0.5
    assert _iou(box_mask, line) < 0.1


def test_large_low_contrast_patch_is_filled_not_speckled() -> None:
    image = _surface(2)
    image[20:60, 25:75] -= 6  # barely darker than the texture, but over a wide region
    [pm] = create_teacher("contrast").label(
        image.astype(np.uint8), np.array([[25, 20, 75, 60]]), np.array([1])
    )
    truth = np.zeros((80, 96), dtype=bool)
    truth[20:60, 25:75] = True
    assert _iou(pm.mask, truth) > 0.7


def test_flat_box_gives_empty_or_weak_mask() -> None:
    image = np.full((40, 40), 100, dtype=np.uint8)
    [pm] = create_teacher("contrast").label(image, np.array([[10, 10, 20, 20]]), np.array([1]))
    assert pm.empty or pm.quality < 0.2


def test_box_at_the_border_and_tiny_boxes() -> None:
    image = _surface(3)
    image[0:6, 0:6] = 40
    out = create_teacher("contrast").label(
        image.astype(np.uint8), np.array([[0, 0, 6, 6], [50, 50, 51, 52]]), np.array([1, 1])
    )
    assert out[0].mask[0:6, 0:6].mean() > 0.8
    assert not out[1].mask[:, :49].any()


def test_colour_matches_gray_on_a_gray_scene() -> None:
    image = _surface(4)
    image[30:40, 30:40] = 60
    gray = image.astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    teacher = create_teacher("contrast")
    box = np.array([[28, 28, 42, 42]], dtype=float)
    [a] = teacher.label(gray, box, np.array([1]))
    [b] = teacher.label(rgb, box, np.array([1]))
    assert np.array_equal(a.mask, b.mask)
    [c] = teacher.label(gray, box, np.array([1]))
    assert np.array_equal(a.mask, c.mask)


def test_other_boxes_are_left_out_of_the_ring() -> None:
    image = _surface(5)
    image[30:40, 30:40] = 60
    image[30:40, 44:54] = 60  # a neighbour just inside the first box's ring
    teacher = create_teacher("contrast")
    boxes = np.array([[30, 30, 40, 40], [44, 30, 54, 40]], dtype=float)
    out = teacher.label(image.astype(np.uint8), boxes, np.array([1, 1]))
    assert all(pm.mask.sum() >= 90 for pm in out)


def test_config_hash_follows_options() -> None:
    assert create_teacher("contrast").config_hash() != create_teacher("contrast", z_min=3.0).config_hash()


def test_on_empty_box_falls_back_to_the_box() -> None:
    image = np.full((40, 40), 100, dtype=np.uint8)
    box = np.array([[10, 10, 20, 20]], dtype=float)
    [kept] = create_teacher("contrast").label(image, box, np.array([1]))
    [filled] = create_teacher("contrast", on_empty="box").label(image, box, np.array([1]))
    assert kept.empty
    assert filled.mask[10:20, 10:20].all() and filled.mask.sum() == 100
    assert filled.quality < 0.5  # flagged by its low score
    with pytest.raises(WeaksegError, match="on_empty"):
        create_teacher("contrast", on_empty="maybe")
