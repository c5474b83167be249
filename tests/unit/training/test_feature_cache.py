"""The feature cache returns what the backbone computes, per image and flip, and rebuilds when stale."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from weakseg.training.feature_cache import FeatureCache, apply_flip


def _backbone() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU())


def _features(net: nn.Module):
    return lambda batch: [net(batch), net(batch)[:, :2, ::2, ::2]]


def test_cached_features_match_the_backbone(tmp_path: Path) -> None:
    net = _backbone()
    images = [torch.rand(3, 16, 20) for _ in range(5)]
    cache = FeatureCache.build(tmp_path / "c", _features(net), images.__getitem__, 5, {"b": 1}, batch_size=2)
    assert len(cache) == 5
    with torch.no_grad():
        for i in (0, 3, 4):
            for flip in ("none", "hflip"):
                expected = _features(net)(apply_flip(images[i][None], flip))
                got = cache.get(i, flip)
                for e, g in zip(expected, got, strict=True):
                    assert torch.allclose(e[0], g, atol=1e-2)  # float16 storage


def test_cache_is_reused_only_for_the_same_key(tmp_path: Path) -> None:
    net = _backbone()
    images = [torch.rand(3, 8, 8) for _ in range(2)]
    calls = []

    def counted(batch: torch.Tensor) -> list[torch.Tensor]:
        calls.append(1)
        return [net(batch)]

    FeatureCache.build(tmp_path / "c", counted, images.__getitem__, 2, {"b": 1})
    n = len(calls)
    FeatureCache.build(tmp_path / "c", counted, images.__getitem__, 2, {"b": 1})
    assert len(calls) == n  # reused
    FeatureCache.build(tmp_path / "c", counted, images.__getitem__, 2, {"b": 2})
    assert len(calls) == 2 * n  # rebuilt for another key


def test_unknown_flip_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown flip"):
        apply_flip(torch.zeros(1), "rot90")
