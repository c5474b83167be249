"""A few training epochs on the synthetic set: the run folder, checkpoints, and that the loss falls."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from weakseg.data.synthetic import generate_synthetic
from weakseg.errors import DataError
from weakseg.pseudolabel.runner import pseudo_label
from weakseg.training.config import load_config
from weakseg.training.train import TrainConfig, train


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("train")
    generate_synthetic(root / "data", n_images=16, size=(64, 64), seed=4)
    pseudo_label(root / "data", "contrast", root / "store")
    return root / "data", root / "store"


def test_train_writes_a_complete_run_and_learns(labelled: tuple[Path, Path], tmp_path: Path) -> None:
    data, store = labelled
    config = TrainConfig(epochs=6, size=(64, 64), batch_size=4, patience=10, lr=2e-3)
    result = train(data, store, tmp_path / "run", config)
    run = tmp_path / "run"
    for name in (
        "config.yaml",
        "class_map.json",
        "splits.json",
        "metrics.csv",
        "weights/best.ckpt",
        "weights/last.ckpt",
        "cache/train/index.json",
    ):
        assert (run / name).is_file(), name
    assert result["skipped_steps"] == 0
    with open(run / "metrics.csv") as fh:
        losses = [float(r["train_loss"]) for r in csv.DictReader(fh) if r.get("train_loss")]
    assert len(losses) == 6
    assert losses[-1] < losses[0]


def test_same_seed_same_numbers(labelled: tuple[Path, Path], tmp_path: Path) -> None:
    data, store = labelled
    config = TrainConfig(epochs=2, size=(64, 64), batch_size=4)

    def losses(run: Path) -> list[str]:
        with open(run / "metrics.csv") as fh:
            return [r["train_loss"] for r in csv.DictReader(fh) if r.get("train_loss")]

    train(data, store, tmp_path / "a", config)
    train(data, store, tmp_path / "b", config)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_resume_continues_from_last_and_refuses_to_overwrite(
    labelled: tuple[Path, Path], tmp_path: Path
) -> None:
    data, store = labelled
    run = tmp_path / "run"
    train(data, store, run, TrainConfig(epochs=1, size=(64, 64), batch_size=4))
    steps_per_epoch = torch.load(run / "weights" / "last.ckpt", map_location="cpu", weights_only=False)[
        "global_step"
    ]
    with pytest.raises(DataError, match="already holds a trained run"):
        train(data, store, run, TrainConfig(epochs=1, size=(64, 64), batch_size=4))
    with pytest.raises(DataError, match="nothing to resume"):
        train(
            data, store, tmp_path / "fresh", TrainConfig(epochs=1, size=(64, 64), batch_size=4), resume=True
        )
    result = train(data, store, run, TrainConfig(epochs=3, size=(64, 64), batch_size=4), resume=True)
    assert result["epochs"] == 3
    checkpoint = torch.load(run / "weights" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 3 * steps_per_epoch  # two more epochs on top of the first
    with open(run / "metrics.csv") as fh:
        epochs = [int(r["epoch"]) for r in csv.DictReader(fh) if r.get("train_loss")]
    assert epochs == [0, 1, 2]  # the first call's rows survive the resumed run
    provenance = json.loads((run / "run.json").read_text())
    assert provenance["resumed"] is True and provenance["teacher"] == "contrast"
    assert len(provenance["pseudo_sha256"]) == 64


def test_ema_weights_are_what_the_checkpoint_holds(labelled: tuple[Path, Path], tmp_path: Path) -> None:
    data, store = labelled
    run = tmp_path / "ema"
    train(data, store, run, TrainConfig(epochs=2, size=(64, 64), batch_size=4, ema_decay=0.5))
    checkpoint = torch.load(run / "weights" / "last.ckpt", map_location="cpu", weights_only=False)
    averaged, online = checkpoint["state_dict"], checkpoint["current_model_state"]
    name = next(k for k in averaged if k.startswith("model.fine_head") and k.endswith("weight"))
    assert not torch.equal(averaged[name], online[name])  # the average lags the online weights


def test_without_the_cache_the_backbone_runs_online_and_agrees(
    labelled: tuple[Path, Path], tmp_path: Path
) -> None:
    data, store = labelled

    def first_loss(run: Path) -> float:
        with open(run / "metrics.csv") as fh:
            return next(float(r["train_loss"]) for r in csv.DictReader(fh) if r.get("train_loss"))

    train(data, store, tmp_path / "cached", TrainConfig(epochs=1, size=(64, 64), batch_size=4))
    train(
        data,
        store,
        tmp_path / "online",
        TrainConfig(epochs=1, size=(64, 64), batch_size=4, feature_cache=False),
    )
    assert not (tmp_path / "online" / "cache").exists()
    # Same seed, same batches: only the cache's float16 rounding separates the two.
    assert first_loss(tmp_path / "online") == pytest.approx(first_loss(tmp_path / "cached"), rel=1e-2)


def test_box_terms_and_quality_weights_train(labelled: tuple[Path, Path], tmp_path: Path) -> None:
    data, store = labelled
    overrides = ["loss.projection_weight=1.0", "loss.pairwise_weight=1.0", "loss.pairwise_warmup_steps=1"]
    config = load_config(None, [*overrides, "loss.use_quality=true", "epochs=1", "size=64", "batch_size=4"])
    result = train(data, store, tmp_path / "box", config)
    assert result["skipped_steps"] == 0
    with open(tmp_path / "box" / "metrics.csv") as fh:
        assert any(r.get("train_loss") for r in csv.DictReader(fh))
