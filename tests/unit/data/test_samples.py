"""Training samples: fixed size, class-id targets, ignore for unlabelled images, quality weights."""

from __future__ import annotations

from pathlib import Path

import torch

from weakseg.annotations.readers import load_annotations
from weakseg.data.samples import IGNORE_INDEX, SampleConfig, SegmentationSamples
from weakseg.data.synthetic import generate_synthetic


def test_samples_have_the_training_size_and_targets(tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "d", n_images=6, size=(80, 100), seed=2)
    ann = load_annotations(tmp_path / "d")
    samples = SegmentationSamples(ann, SampleConfig(size=(64, 64)))
    item = samples[1]
    assert item["image"].shape == (3, 64, 64) and item["image"].min() >= 0 and item["image"].max() <= 1
    assert item["target"].shape == (64, 64) and item["target"].dtype == torch.long
    labelled = [samples[i] for i in range(len(samples)) if ann.images[i].instances]
    assert any((s["target"] > 0).any() for s in labelled)
    assert all(s["boxes"].shape[1] == 4 for s in labelled)


def test_unannotated_images_are_ignored_and_quality_weights_apply(tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "d", n_images=6, size=(80, 100), seed=2)
    ann = load_annotations(tmp_path / "d")
    with_defect = next(i for i, r in enumerate(ann.images) if r.instances and i > 0)
    for inst in ann.images[with_defect].instances:
        inst.score = 0.5
    ann.images[0].annotated = False
    ann.images[0].instances = []
    samples = SegmentationSamples(ann, SampleConfig(size=(40, 50), use_quality=True))
    assert (samples[0]["target"] == IGNORE_INDEX).all()
    weights = samples[with_defect]["weights"]
    target = samples[with_defect]["target"]
    assert torch.allclose(weights[target > 0], torch.tensor(0.5))
    assert (weights[target == 0] == 1).all()
