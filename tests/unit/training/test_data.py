"""Training items: boxes and targets follow the flips; the sampler's share of defect-free images."""

from __future__ import annotations

from pathlib import Path

import torch

from weakseg.annotations.readers import load_annotations
from weakseg.data.samples import SampleConfig, SegmentationSamples
from weakseg.data.synthetic import generate_synthetic
from weakseg.training.data import CachedSamples, DefectAwareSampler, collate, flip_boxes


def test_boxes_and_targets_flip_with_the_image(tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "data", n_images=6, size=(48, 64), seed=2)
    ann = load_annotations(tmp_path / "data")
    samples = SegmentationSamples(ann, SampleConfig(size=(32, 32)))
    index = next(i for i, r in enumerate(ann.images) if r.instances)
    plain = samples[index]
    items = CachedSamples(samples, None, augment=True, seed=0, flips=("hflip",))
    item = items[index]
    assert torch.equal(item["target"], torch.flip(plain["target"], dims=(-1,)))
    for (x0, y0, x1, y1), (f0, g0, f1, g1) in zip(
        plain["boxes"].tolist(), item["boxes"].tolist(), strict=True
    ):
        assert (f0, g0, f1, g1) == (32 - x1, y0, 32 - x0, y1)
        # The defect lies inside its flipped box in the flipped target.
        inside = item["target"][int(g0) : int(g1) + 1, int(f0) : int(f1) + 1]
        assert (inside > 0).any()
    batch = collate([items[i] for i in range(3)])
    assert isinstance(batch["boxes"], list) and len(batch["boxes"]) == 3 and batch["features"] is None
    assert batch["correctable"].shape == (3, 32, 32)


def test_flip_boxes_is_its_own_inverse() -> None:
    boxes = torch.tensor([[1.0, 2.0, 5.0, 7.0], [0.0, 0.0, 10.0, 3.0]])
    assert torch.equal(flip_boxes(flip_boxes(boxes, 10, "hflip"), 10, "hflip"), boxes)
    assert torch.equal(flip_boxes(boxes, 10, "none"), boxes)


class _Epoch:
    epoch = 0


def test_sampler_takes_every_defect_image_and_a_seeded_share_of_negatives(tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "data", n_images=20, size=(32, 32), seed=1, negative_fraction=0.5)
    ann = load_annotations(tmp_path / "data")
    samples = SegmentationSamples(ann, SampleConfig(size=(32, 32)))
    negatives = {i for i, r in enumerate(ann.images) if r.is_negative}
    positives = set(range(len(ann.images))) - negatives
    assert len(negatives) >= 4 and positives
    source = _Epoch()
    sampler = DefectAwareSampler(samples, 0.5, seed=3, epoch_source=source)
    first = list(sampler)
    assert len(first) == len(sampler) == len(positives) + min(len(negatives), -(-len(positives) // 2))
    assert positives <= set(first) and len(set(first)) == len(first)
    assert first == list(sampler)  # same epoch, same draw
    source.epoch = 1
    assert list(sampler) != first
    assert sorted(DefectAwareSampler(samples, None, seed=3)) == list(range(len(ann.images)))
