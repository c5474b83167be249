"""The size policy: aspect kept, thin defects kept when shrinking, padding cropped off predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weakseg.data.preprocess import (
    IGNORE_INDEX,
    canvas_to_original,
    geometry,
    image_to_canvas,
    labels_to_canvas,
)


def test_letterbox_keeps_the_aspect_ratio_and_pads_bottom_right() -> None:
    geom = geometry((100, 400), (128, 128))
    assert geom.content == (32, 128) and geom.scale == (0.32, 0.32)
    image = np.full((100, 400), 200, np.uint8)
    image[:, :10] = 0
    x = image_to_canvas(image, geom)
    assert x.shape == (3, 128, 128)
    assert torch.allclose(x[:, 32:, 50], torch.tensor(200 / 255))  # padding repeats the edge row
    assert x[0, 5, 0] < 0.1
    stretched = geometry((100, 400), (128, 128), "stretch")
    assert stretched.content == (128, 128)
    with pytest.raises(ValueError, match="resize mode"):
        geometry((10, 10), (8, 8), "crop")


def test_shrinking_never_loses_a_thin_defect() -> None:
    labels = np.zeros((300, 300), np.uint8)
    labels[:, 151] = 2  # a 1-px vertical crack
    labels[40:44, 10:140] = 1  # a 4-px horizontal one, clear of the other
    geom = geometry((300, 300), (128, 128))
    out = labels_to_canvas(labels, geom)
    assert (out == 2).any(axis=1).all(), "every row still crosses the thin crack"
    assert (out == 1).any(axis=0)[5:59].all()
    assert (out == 2).sum(axis=1).max() <= 2  # kept thin, not smeared
    nearest = labels[np.linspace(0, 299, 128).astype(int)][:, np.linspace(0, 299, 128).astype(int)]
    assert not (nearest == 2).any(), "nearest-neighbour shrinking drops it (why this exists)"


def test_shrinking_keeps_majority_labels_and_ignore() -> None:
    labels = np.zeros((64, 64), np.uint8)
    labels[:32] = IGNORE_INDEX
    labels[40:56, 40:56] = 3
    out = labels_to_canvas(labels, geometry((64, 64), (32, 32)))
    assert (out[:16] == IGNORE_INDEX).all() and (out[20:28, 20:28] == 3).all()
    assert (out[16:20] == 0).all()


def test_growing_uses_nearest_and_padding_is_ignored() -> None:
    labels = np.zeros((10, 20), np.uint8)
    labels[2:4, 5:8] = 1
    out = labels_to_canvas(labels, geometry((10, 20), (40, 40)))
    assert out.shape == (40, 40) and set(np.unique(out[20:])) == {IGNORE_INDEX}
    assert (out[4:8, 10:16] == 1).all() and (out == 1).sum() == 4 * 6


def test_predictions_go_back_to_the_original_size_without_the_padding() -> None:
    geom = geometry((50, 200), (64, 64))
    prob = torch.zeros(2, 64, 64)
    prob[1, : geom.content[0]] = 1.0  # the content region says "defect", the padding says nothing
    back = canvas_to_original(prob, geom)
    assert back.shape == (2, 50, 200) and torch.allclose(back[1], torch.ones(50, 200))
