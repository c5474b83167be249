"""Two-process CPU DDP (gloo) through the CLI, as users run it: ``weakseg train --devices 2 --strategy ddp``.

Lightning's launcher re-runs the command for rank 1, so both ranks go through ``train`` (splits, feature
cache, run files) before training on their own shard of the images.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.distributed
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from weakseg.annotations.splits import apply_splits, load_splits
from weakseg.data.samples import SampleConfig, SegmentationSamples
from weakseg.data.synthetic import generate_synthetic
from weakseg.pseudolabel.runner import pseudo_label
from weakseg.pseudolabel.store import load_pseudo
from weakseg.student.backbones import create_backbone
from weakseg.student.model import DecoderConfig, StudentModel
from weakseg.training.data import CachedSamples, collate
from weakseg.training.feature_cache import FeatureCache
from weakseg.training.module import StudentModule

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with the gloo backend is not available",
)

BATCH = 4


def test_two_process_cpu_ddp_train(tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "data", n_images=16, size=(64, 64), seed=5)  # 11 train, 3 val
    pseudo_label(tmp_path / "data", "box", tmp_path / "store")
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "weakseg",
            "train",
            str(tmp_path / "data"),
            "--pseudo",
            str(tmp_path / "store"),
            "--out",
            str(run),
            "--weights",
            "none",
            "--epochs",
            "1",
            "--size",
            "64",
            "--batch-size",
            str(BATCH),
            "--devices",
            "2",
            "--strategy",
            "ddp",
            "--verbose",  # Lightning's own lines say that both ranks joined
        ],
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    # Both ranks joined the gloo group.
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log, log
    assert "Starting with 2 processes" in log, log

    for name in ("config.yaml", "class_map.json", "splits.json", "weights/last.ckpt"):
        assert (run / name).is_file(), name
    for split in ("train", "val"):
        assert (run / "cache" / split / "index.json").is_file()
        assert not list((run / "cache").glob(f".{split}.*.tmp")), "a cache build was left half-way"

    # Each rank trained on half of the training images: the distributed sampler was in use.
    splits = json.loads((run / "splits.json").read_text())
    doc = splits.get("splits", splits)
    n_train = sum(1 for v in doc.values() if v == "train")
    n_val = sum(1 for v in doc.values() if v == "val")
    assert n_train % 2 == 1 and n_val % 2 == 1  # uneven shards: padding would repeat an image
    ckpt = torch.load(run / "weights" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == math.ceil(math.ceil(n_train / 2) / BATCH)

    with open(run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    val = [r for r in rows if r.get("val_anomaly_miou")]
    assert len(val) == 1
    keys = ("val_anomaly_miou", "val_binary_iou", "val_binary_recall", "val_binary_precision")
    for key in keys:
        assert 0.0 <= float(val[0][key]) <= 1.0
    # The ranks' confusion matrices were summed, each val image counted once: validating the same
    # weights in a single process gives the same numbers.
    single = _validate_alone(run, tmp_path / "store", ckpt["state_dict"])
    for key in keys:
        assert float(val[0][key]) == pytest.approx(single[key], abs=1e-6), key


def _validate_alone(run: Path, store: Path, state_dict: dict) -> dict[str, float]:
    masks = load_pseudo(store)
    apply_splits(masks, load_splits(run / "splits.json"), strict=False)
    val_set = masks.subset("val")
    model = StudentModel(create_backbone("lite0", weights=None), len(masks.class_map), DecoderConfig())
    module = StudentModule(model, masks.class_map.names)
    module.load_state_dict(state_dict)
    samples = SegmentationSamples(val_set, SampleConfig(size=(64, 64)))
    dataset = CachedSamples(samples, FeatureCache(run / "cache" / "val"), augment=False)
    loader = DataLoader(dataset, batch_size=BATCH, collate_fn=collate)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    return trainer.validate(module, loader, verbose=False)[0]


class _Step(nn.Module):
    """What Lightning's DDP wrapper does: the wrapped module's forward is the training step."""

    def __init__(self, module: StudentModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.module.training_step(batch, 0)


def _nan_on_rank_one(rank: int, folder: str) -> None:
    """One DDP training step (forward, backward with its all-reduce) where only rank 1's loss is NaN."""
    dist = torch.distributed
    dist.init_process_group(
        "gloo",
        init_method=f"file://{folder}/rendezvous",
        rank=rank,
        world_size=2,
        timeout=timedelta(seconds=30),
    )
    try:
        torch.manual_seed(0)
        model = StudentModel(
            create_backbone("lite0", weights=None), 1, DecoderConfig(width=16, out_channels=16)
        )
        module = StudentModule(model, ("defect",))
        if rank == 1:
            forward = module.criterion.forward
            module.criterion.forward = lambda *args: (forward(*args)[0] * float("nan"), {})
        g = torch.Generator().manual_seed(rank)
        batch = {
            "image": torch.rand(2, 3, 32, 32, generator=g),
            "target": torch.randint(0, 2, (2, 32, 32), generator=g),
            "weights": torch.ones(2, 32, 32),
        }
        loss = DistributedDataParallel(_Step(module))(batch)
        loss.backward()
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        result = {
            "loss": loss.item(),
            "requires_grad": loss.requires_grad,
            "skipped": module.skipped_steps,
            "zero_grads": all(g is not None and not g.any() for g in grads),
        }
        (Path(folder) / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_a_nan_on_one_rank_is_skipped_by_both(tmp_path: Path) -> None:
    """Both ranks skip the step and run the same (zero) backward, so neither waits for the other."""
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_nan_on_rank_one, args=(rank, str(tmp_path))) for rank in (0, 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        if worker.is_alive():  # pragma: no cover - a hang
            worker.kill()
    assert [w.exitcode for w in workers] == [0, 0]
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result == {"loss": 0.0, "requires_grad": True, "skipped": 1, "zero_grads": True}, rank
