"""A small valid COCO dataset that each bad-input test breaks in one way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from weakseg.annotations import masks as mask_ops


def write_coco_dataset(root: Path, *, size: tuple[int, int] = (40, 32)) -> Path:
    """Two images, two classes, one RLE mask and one box; returns the JSON path."""
    width, height = size
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (height, width), dtype=np.uint8)).save(root / "images" / name)
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[5:15, 10:20] = 1
    coco = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": width, "height": height},
            {"id": 2, "file_name": "b.png", "width": width, "height": height},
        ],
        "categories": [{"id": 1, "name": "crack"}, {"id": 2, "name": "blob"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [10, 5, 10, 10],
                "segmentation": mask_ops.encode(mask),
            },
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [2, 2, 6, 4]},
        ],
    }
    path = root / "annotations.json"
    path.write_text(json.dumps(coco))
    return path


@pytest.fixture
def coco_dataset(tmp_path: Path) -> Path:
    return write_coco_dataset(tmp_path / "data")
