"""The feature cache returns what the backbone computes, per image and flip, and rebuilds when stale."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from weakseg.training.feature_cache import FeatureCache, apply_flip, image_fingerprint, is_rank_zero


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


def test_an_image_rewritten_in_place_is_recomputed(tmp_path: Path) -> None:
    """Same name, same size, same mtime, other pixels: the content digest still changes the key."""
    net = _backbone()
    rng = np.random.default_rng(0)
    paths = [tmp_path / f"im{i}.png" for i in range(2)]
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path, compress_level=0)

    def image(i: int) -> torch.Tensor:
        with Image.open(paths[i]) as img:
            return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255

    def build() -> FeatureCache:  # what train() does: the key lists each file with its digest
        key = {"files": [[p.name, image_fingerprint(p)] for p in paths]}
        return FeatureCache.build(tmp_path / "c", lambda b: [net(b)], image, 2, key)

    first = build().get(1)[0]
    stat = paths[1].stat()
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(paths[1], compress_level=0)
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns))  # what cp -p / rsync -a keep
    assert paths[1].stat().st_size == stat.st_size and paths[1].stat().st_mtime_ns == stat.st_mtime_ns
    again = build().get(1)[0]
    with torch.no_grad():
        expected = net(image(1)[None])[0]
    assert not torch.allclose(again, first, atol=1e-2)
    assert torch.allclose(again, expected, atol=1e-2)  # float16 storage


def test_unknown_flip_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown flip"):
        apply_flip(torch.zeros(1), "rot90")


def test_concurrent_builders_build_once_and_agree(tmp_path: Path) -> None:
    """Like the ranks of a DDP run: all ask for the same cache at once, one builds, all read the same."""
    net = _backbone()
    images = [torch.rand(3, 8, 8) for _ in range(6)]
    calls: list[int] = []
    start = threading.Barrier(3)
    caches: list[FeatureCache] = []

    def counted(batch: torch.Tensor) -> list[torch.Tensor]:
        calls.append(1)
        return [net(batch)]

    def worker() -> None:
        start.wait()
        caches.append(
            FeatureCache.build(tmp_path / "c", counted, images.__getitem__, 6, {"b": 1}, batch_size=2)
        )

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(caches) == 3
    assert len(calls) == 3 * 2  # one build: 3 batches x 2 flips
    for cache in caches[1:]:
        for a, b in zip(caches[0].get(5, "hflip"), cache.get(5, "hflip"), strict=True):
            assert torch.equal(a, b)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".c.lock", "c"]  # no temporary folder left


def test_stale_cache_is_replaced_whole(tmp_path: Path) -> None:
    net = _backbone()
    images = [torch.rand(3, 8, 8) for _ in range(2)]
    old = FeatureCache.build(tmp_path / "c", lambda b: [net(b)], images.__getitem__, 2, {"b": 1})
    (tmp_path / ".c.x1.tmp").mkdir()  # left by a killed build
    new = FeatureCache.build(tmp_path / "c", lambda b: [net(b)[:, :1]], images.__getitem__, 2, {"b": 2})
    assert old.get(0)[0].shape[0] == 4  # the old reader keeps its files
    assert new.get(0)[0].shape[0] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".c.lock", "c"]


@pytest.mark.parametrize(
    ("env", "zero"),
    [
        ({}, True),
        ({"RANK": "0", "LOCAL_RANK": "0"}, True),
        ({"RANK": "1", "LOCAL_RANK": "0"}, False),
        ({"LOCAL_RANK": "1"}, False),
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),
        ({"LOCAL_RANK": "0", "SLURM_PROCID": "0"}, True),
        ({"LOCAL_RANK": "1", "SLURM_PROCID": "0"}, False),
        ({"SLURM_PROCID": "3"}, False),
    ],
)
def test_rank_zero_from_the_environment(env: dict[str, str], zero: bool) -> None:
    assert is_rank_zero(env) is zero
