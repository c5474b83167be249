"""Training items: one image (with a seeded random flip), its targets and, when cached, its features.

Without a cache (``cache=None``) items carry no ``features`` and the module runs the frozen backbone
on every batch: the slow path, kept for measuring the cache and for inputs that cannot be cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from weakseg.data.samples import SegmentationSamples
from weakseg.training.feature_cache import FLIPS, FeatureCache, apply_flip


class CachedSamples(Dataset):
    """``features`` from the cache, ``image``/``target``/``weights`` flipped to match."""

    def __init__(
        self,
        samples: SegmentationSamples,
        cache: FeatureCache | None,
        *,
        augment: bool,
        seed: int = 0,
        flips: Sequence[str] = FLIPS,
    ) -> None:
        self.samples, self.cache, self.augment, self.seed = samples, cache, augment, seed
        self.flips = list(cache.flips) if cache is not None else list(flips)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def _flip(self, index: int) -> str:
        if not self.augment:
            return "none"
        if len(self.flips) == 1:
            return self.flips[0]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 7919 + index)
        return self.flips[int(torch.randint(len(self.flips), (1,), generator=g))]

    def __getitem__(self, index: int) -> dict[str, Any]:
        flip = self._flip(index)
        item = self.samples[index]
        out = {
            "image": apply_flip(item["image"], flip),
            "target": apply_flip(item["target"], flip),
            "weights": apply_flip(item["weights"], flip),
            "box_masks": apply_flip(self.samples.box_mask(index), flip),
            "index": index,
        }
        if self.cache is not None:
            out["features"] = self.cache.get(index, flip)
        return out


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    features = None
    if "features" in items[0]:
        features = [torch.stack(level) for level in zip(*(i["features"] for i in items), strict=True)]
    return {
        "features": features,
        "image": torch.stack([i["image"] for i in items]),
        "target": torch.stack([i["target"] for i in items]),
        "weights": torch.stack([i["weights"] for i in items]),
        "box_masks": torch.stack([i["box_masks"] for i in items]),
        "index": torch.tensor([i["index"] for i in items]),
    }
