"""A few training epochs on the synthetic set: the run folder, checkpoints, and that the loss falls."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from weakseg.annotations.splits import load_splits
from weakseg.data.synthetic import generate_synthetic
from weakseg.errors import DataError, Interrupted
from weakseg.pseudolabel.runner import pseudo_label
from weakseg.pseudolabel.store import load_pseudo
from weakseg.student.segmenter import create_segmenter
from weakseg.training.config import load_config
from weakseg.training.feature_cache import FeatureCache
from weakseg.training.module import StudentModule
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


def test_resume_with_more_epochs_stretches_the_cosine_schedule(
    labelled: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--resume epochs=4`` after 2 epochs: the rate follows a cosine over 4 epochs, not the old 2."""
    data, store = labelled
    seen: dict[int, dict[int, float]] = {2: {}, 4: {}}  # epochs of the call -> {epoch: rate}
    start = StudentModule.on_train_epoch_start

    def record(module: StudentModule) -> None:
        start(module)
        seen[module.max_epochs][module.current_epoch] = module.trainer.optimizers[0].param_groups[0]["lr"]

    monkeypatch.setattr(StudentModule, "on_train_epoch_start", record)
    lr, run = 1e-3, tmp_path / "run"
    for epochs, resume in ((2, False), (4, True)):
        config = TrainConfig(epochs=epochs, size=(64, 64), batch_size=4, patience=10, lr=lr)
        train(data, store, run, config, resume=resume)

    def cosine(epoch: int, total: int) -> float:
        return lr * (1 + math.cos(math.pi * epoch / total)) / 2

    assert sorted(seen[2]) == [0, 1]
    assert seen[2] == pytest.approx({e: cosine(e, 2) for e in seen[2]})
    # The resumed call starts after the epoch last.ckpt holds (1 or 2: Lightning rewrites last.ckpt
    # only with a new best) and runs to epoch 3. On the old 2-epoch curve its rate would be 0 at
    # epoch 2, then climb back to lr / 2.
    assert {2, 3} <= set(seen[4]) <= {1, 2, 3}
    assert seen[4] == pytest.approx({e: cosine(e, 4) for e in seen[4]})


def test_a_changed_image_refreshes_the_shared_feature_cache(
    labelled: tuple[Path, Path], tmp_path: Path
) -> None:
    """An image rewritten under the same name gets fresh features, not the stale cached ones."""
    # This test edits an image: copies, not the shared set (the store finds its images at ../data).
    data, store = (Path(shutil.copytree(p, tmp_path / p.name)) for p in labelled)
    cache = tmp_path / "cache"
    config = TrainConfig(epochs=1, size=(64, 64), batch_size=4)
    train(data, store, tmp_path / "a", config, cache_dir=cache)
    before = [np.array(level) for level in FeatureCache(cache / "train").levels]
    splits = load_splits(tmp_path / "a" / "splits.json")
    masks = load_pseudo(store)  # what train() reads the images through
    record = next(r for r in masks.images if splits[r.file_name] == "train")
    path = masks.image_path(record)
    assert path.resolve().is_relative_to(data.resolve())
    with Image.open(path) as img:
        pixels = np.asarray(img)
    Image.fromarray(255 - pixels).save(path)  # same name, same format, other pixels

    train(data, store, tmp_path / "b", config, cache_dir=cache)
    after = [np.array(level) for level in FeatureCache(cache / "train").levels]
    changed = set()
    for old, new in zip(before, after, strict=True):
        diff = np.abs(old.astype(np.float32) - new.astype(np.float32)).reshape(len(old), -1).max(axis=1)
        changed |= set(np.flatnonzero(diff > 0.05).tolist())
    assert len(changed) == 2  # the edited image's two rows (no flip, hflip); the others are as before


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


def test_box_terms_reach_the_trained_weights(labelled: tuple[Path, Path], tmp_path: Path) -> None:
    """Two runs seeded alike on the same batches (quality weights on), one with the box terms: only the
    box terms can tell their weights apart, so they must differ where the terms act (binary head)."""
    data, store = labelled
    # The first packaged-weights load in a process draws random numbers (a throwaway timm model, then
    # cached), which shifts the decoder's initial weights of that first run only: load it up front.
    create_segmenter("student", "lite0", 1)
    common = ["loss.use_quality=true", "epochs=1", "size=64", "batch_size=4"]
    box = ["loss.projection_weight=1.0", "loss.pairwise_weight=1.0", "loss.pairwise_warmup_steps=1"]
    weights = {}
    for name, overrides in (("plain", common), ("box", [*box, *common])):
        result = train(data, store, tmp_path / name, load_config(None, overrides))
        assert result["skipped_steps"] == 0
        last = tmp_path / name / "weights" / "last.ckpt"
        weights[name] = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    assert weights["plain"].keys() == weights["box"].keys()
    moved = [k for k in weights["plain"] if not torch.equal(weights["plain"][k], weights["box"][k])]
    assert any(k.startswith("model.binary_head.") for k in moved), moved
    assert not any(k.startswith("model.backbone.") for k in moved)  # frozen either way


def test_last_checkpoint_is_the_last_epoch_even_without_a_new_best(
    labelled: tuple[Path, Path], tmp_path: Path
) -> None:
    data, store = labelled
    # lr=0: the val score never improves after the first epoch, so no new "best" is saved after it.
    config = TrainConfig(epochs=3, size=(64, 64), batch_size=4, lr=0.0, patience=10)
    train(data, store, tmp_path / "run", config)
    last = torch.load(tmp_path / "run/weights/last.ckpt", map_location="cpu", weights_only=False)
    best = torch.load(tmp_path / "run/weights/best.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2 and best["epoch"] == 0
    assert (tmp_path / "run/decision.json").is_file()


@pytest.mark.parametrize(
    "start", [signal.default_int_handler, signal.SIG_IGN], ids=["python-default", "ignored-at-start"]
)
def test_a_ctrl_c_stops_the_run_wherever_it_lands_and_however_the_process_started(
    labelled: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: Any
) -> None:
    """Two ways a SIGINT used to be lost: it lands in code that swallows KeyboardInterrupt (a finaliser,
    a library's cleanup), or the process started with SIGINT ignored (a background job of a
    non-interactive shell), where Python installs no KeyboardInterrupt at all. Either way the run must
    stop with the resume hint, keep its finished epochs, and give the starting handler back."""
    step = StudentModule.training_step

    def step_then_ctrl_c_in_swallowing_code(self: StudentModule, batch: Any, batch_idx: int) -> Any:
        loss = step(self, batch, batch_idx)
        if self.current_epoch == 1 and batch_idx == 0:
            try:  # what an ``except BaseException: pass`` in someone's cleanup does
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # the handler runs here, between bytecodes
            except KeyboardInterrupt:
                pass
        return loss

    monkeypatch.setattr(StudentModule, "training_step", step_then_ctrl_c_in_swallowing_code)
    data, store = labelled
    before = signal.signal(signal.SIGINT, start)
    try:
        with pytest.raises(Interrupted, match=r"continue with: weakseg train .* --resume"):
            train(data, store, tmp_path / "run", TrainConfig(epochs=4, size=(64, 64), batch_size=4))
        assert signal.getsignal(signal.SIGINT) == start  # the handler is given back
    finally:
        signal.signal(signal.SIGINT, before)
    epochs = {row["epoch"] for row in csv.DictReader((tmp_path / "run" / "metrics.csv").open())}
    assert "0" in epochs and "3" not in epochs
