"""A tiny scene with known defects, shared by the teacher tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy gray surface with a dark disc and a bright square; returns image, boxes, true masks."""
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 6, (64, 80)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:64, :80]
    disc = (yy - 20) ** 2 + (xx - 20) ** 2 <= 36
    square = np.zeros_like(disc)
    square[40:50, 50:62] = True
    image[disc] = 60
    image[square] = 210
    boxes = np.array([[14, 14, 27, 27], [50, 40, 62, 50]], dtype=float)
    return image, boxes, np.stack([disc, square])
