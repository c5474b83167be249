"""Training items: box masks follow the boxes and the flips."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from weakseg.annotations.readers import load_annotations
from weakseg.data.samples import SampleConfig, SegmentationSamples
from weakseg.data.synthetic import generate_synthetic
from weakseg.training.data import CachedSamples, collate


def test_box_masks_cover_the_boxes_and_flip_with_the_image(tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "data", n_images=6, size=(48, 64), seed=2)
    ann = load_annotations(tmp_path / "data")
    samples = SegmentationSamples(ann, SampleConfig(size=(32, 32)))
    index = next(i for i, r in enumerate(ann.images) if r.instances)
    mask = samples.box_mask(index)
    inside = torch.zeros_like(mask)
    for x0, y0, x1, y1 in samples.boxes(index).tolist():
        assert mask[int(y0), int(x0)] and mask[math.ceil(y1) - 1, math.ceil(x1) - 1]
        inside[int(y0) : math.ceil(y1), int(x0) : math.ceil(x1)] = True
    assert mask.dtype == torch.bool and not (mask & ~inside).any()
    items = CachedSamples(samples, None, augment=True, seed=0, flips=("hflip",))
    item = items[index]
    assert torch.equal(item["box_masks"], torch.flip(mask, dims=(-1,)))
    batch = collate([items[i] for i in range(3)])
    assert batch["box_masks"].shape == (3, 32, 32) and batch["features"] is None
