"""One tiny trained run shared by the inference tests: synthetic data -> box teacher -> 1 epoch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from weakseg.data.synthetic import generate_synthetic
from weakseg.pseudolabel.runner import pseudo_label
from weakseg.training.train import TrainConfig, train


@dataclass(frozen=True)
class TrainedRun:
    data: Path  # synthetic dataset with human masks (non-square images)
    store: Path  # the contrast teacher's pseudo-label store
    run: Path  # the run folder


@pytest.fixture(scope="package")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    root = tmp_path_factory.mktemp("inference")
    generate_synthetic(root / "data", n_images=12, size=(56, 72), seed=3)
    pseudo_label(root / "data", "contrast", root / "store")
    config = TrainConfig(epochs=1, size=(64, 64), batch_size=4)
    train(root / "data", root / "store", root / "run", config)
    return TrainedRun(root / "data", root / "store", root / "run")


@dataclass(frozen=True)
class TagClassifierRun:
    data: Path  # synthetic dataset with human masks: tags derived from them, a quarter defect-free
    run: Path  # the classifier run


@pytest.fixture(scope="package")
def tag_classifier(tmp_path_factory: pytest.TempPathFactory) -> TagClassifierRun:
    from weakseg.training.classifier import ClassifierTrainConfig, train_classifier

    root = tmp_path_factory.mktemp("tags")
    generate_synthetic(root / "data", n_images=16, size=(56, 72), seed=5)
    config = ClassifierTrainConfig(
        backbone_weights=None, size=(64, 64), epochs=1, batch_size=4, cam_channels=16
    )
    train_classifier(root / "data", root / "run", config)
    return TagClassifierRun(root / "data", root / "run")
