"""Fine-tuning the backbone: which parameters train, at what rate, and that the cache is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from weakseg.data.synthetic import generate_synthetic
from weakseg.errors import WeaksegError
from weakseg.student.backbones import create_backbone
from weakseg.training.config import TrainConfig
from weakseg.training.train import train


def test_last_mode_trains_only_the_deepest_stage() -> None:
    backbone = create_backbone("lite0", weights=None, mode="last")
    trained = {n.split(".")[2] for n, p in backbone.named_parameters() if p.requires_grad}
    assert trained == {"5", "6"}  # blocks.5 and blocks.6: the stride-32 stage
    assert not any(p.requires_grad for n, p in backbone.named_parameters() if n.startswith("model.conv_stem"))
    backbone.train()
    assert not any(m.training for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_a_trained_backbone_cannot_use_the_feature_cache() -> None:
    with pytest.raises(WeaksegError, match="feature_cache=false"):
        TrainConfig(backbone_mode="all")


def test_fine_tuning_moves_the_backbone_at_a_tenth_of_the_rate(tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "d", n_images=10, size=(48, 48), seed=5)
    before = create_backbone("lite0").state_dict()
    config = TrainConfig(epochs=1, size=(64, 64), batch_size=4, backbone_mode="last", feature_cache=False)
    train(tmp_path / "d", tmp_path / "d", tmp_path / "run", config)
    ckpt = torch.load(tmp_path / "run/weights/last.ckpt", map_location="cpu", weights_only=False)
    after = {
        k[len("model.backbone.") :]: v
        for k, v in ckpt["state_dict"].items()
        if k.startswith("model.backbone.")
    }
    changed = {
        k.split(".")[2]
        for k, v in after.items()
        if v.dtype.is_floating_point and not torch.equal(v, before[k])
    }
    assert changed and changed <= {"5", "6"}
    groups = ckpt["optimizer_states"][0]["param_groups"]
    assert len(groups) == 2 and groups[1]["initial_lr"] == pytest.approx(groups[0]["initial_lr"] * 0.1)
