"""Datasets over the feature cache: each item is one image (with a random flip) and its cached features."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from weakseg.data.samples import SegmentationSamples
from weakseg.training.feature_cache import FeatureCache, apply_flip


class CachedSamples(Dataset):
    """``features`` from the cache, ``image``/``target``/``weights`` flipped to match."""

    def __init__(
        self, samples: SegmentationSamples, cache: FeatureCache, *, augment: bool, seed: int = 0
    ) -> None:
        self.samples, self.cache, self.augment, self.seed = samples, cache, augment, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def _flip(self, index: int) -> str:
        if not self.augment or len(self.cache.flips) == 1:
            return "none"
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 7919 + index)
        return self.cache.flips[int(torch.randint(len(self.cache.flips), (1,), generator=g))]

    def __getitem__(self, index: int) -> dict[str, Any]:
        flip = self._flip(index)
        item = self.samples[index]
        return {
            "features": self.cache.get(index, flip),
            "image": apply_flip(item["image"], flip),
            "target": apply_flip(item["target"], flip),
            "weights": apply_flip(item["weights"], flip),
            "index": index,
        }


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "features": [torch.stack(level) for level in zip(*(i["features"] for i in items), strict=True)],
        "image": torch.stack([i["image"] for i in items]),
        "target": torch.stack([i["target"] for i in items]),
        "weights": torch.stack([i["weights"] for i in items]),
        "index": torch.tensor([i["index"] for i in items]),
    }
