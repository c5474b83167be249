"""Training items: one image (with a seeded random flip), its targets and, when cached, its features.

Without a cache (``cache=None``) items carry no ``features`` and the module runs the frozen backbone
on every batch: the slow path, kept for measuring the cache and for inputs that cannot be cached.

:class:`DefectAwareSampler` draws each epoch's images: every image with a defect, plus a seeded share
of the defect-free ones. On Magnetic Tile 71 % of the images are defect-free; drawing them all every
epoch spends most of the compute on pixels the model already gets right.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import Dataset, Sampler

from weakseg.data.samples import SegmentationSamples
from weakseg.training.feature_cache import FLIPS, FeatureCache, apply_flip


def flip_boxes(boxes: torch.Tensor, width: int, flip: str) -> torch.Tensor:
    """``[N, 4]`` ``(x0, y0, x1, y1)`` boxes after the same flip as their image."""
    if flip == "none" or boxes.numel() == 0:
        return boxes
    if flip == "hflip":
        return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
    raise ValueError(f"unknown flip {flip!r}; known: {', '.join(FLIPS)}")


class CachedSamples(Dataset):
    """``features`` from the cache, ``image``/``target``/``weights``/``correctable``/``boxes`` flipped
    to match."""

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
        width = int(item["image"].shape[-1])
        out = {
            "image": apply_flip(item["image"], flip),
            "target": apply_flip(item["target"], flip),
            "weights": apply_flip(item["weights"], flip),
            "correctable": apply_flip(item["correctable"], flip),
            "box_class": apply_flip(item["box_class"], flip),
            "boxes": flip_boxes(item["boxes"], width, flip),
            "index": index,
        }
        if self.cache is not None:
            out["features"] = self.cache.get(index, flip)
        return out


class DatasetEpoch(Callback):
    """Give the training set the epoch number, so its seeded flips change every epoch (reproducibly)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.dataset.epoch = trainer.current_epoch


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    features = None
    if "features" in items[0]:
        features = [torch.stack(level) for level in zip(*(i["features"] for i in items), strict=True)]
    return {
        "features": features,
        "image": torch.stack([i["image"] for i in items]),
        "target": torch.stack([i["target"] for i in items]),
        "weights": torch.stack([i["weights"] for i in items]),
        "correctable": torch.stack([i["correctable"] for i in items]),
        "box_class": torch.stack([i["box_class"] for i in items]),
        "boxes": [i["boxes"] for i in items],  # [N_i, 4] each: images hold different numbers of boxes
        "index": torch.tensor([i["index"] for i in items]),
    }


class DefectAwareSampler(Sampler[int]):
    """Each epoch: every image with a defect (or unknown content) plus ``negative_ratio`` defect-free
    images per such image, drawn without replacement and seeded by (seed, epoch), in shuffled order.

    ``negative_ratio=None`` draws every image (a plain seeded shuffle). Unknown images (unlabelled,
    ignored by the pixel loss) count with the defect images: they are there for the box terms or a
    mean teacher. The epoch is read from ``epoch_source.epoch`` (the training dataset, which a
    callback updates), so Lightning's distributed wrapper, which iterates a copy, sees it too.
    """

    def __init__(
        self,
        samples: SegmentationSamples,
        negative_ratio: float | None,
        seed: int = 0,
        epoch_source: Any = None,
    ) -> None:
        records = samples.ann.images
        self.negatives = [i for i, r in enumerate(records) if r.is_negative]
        negative = set(self.negatives)
        self.others = [i for i in range(len(records)) if i not in negative]
        self.negative_ratio, self.seed, self.epoch_source = negative_ratio, seed, epoch_source
        self.epoch = 0

    def _n_negatives(self) -> int:
        if self.negative_ratio is None or not self.others:
            return len(self.negatives)
        return min(len(self.negatives), math.ceil(self.negative_ratio * len(self.others)))

    def __len__(self) -> int:
        return len(self.others) + self._n_negatives()

    def __iter__(self) -> Iterator[int]:
        epoch = getattr(self.epoch_source, "epoch", self.epoch)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 104_729 + 17)
        pick = torch.randperm(len(self.negatives), generator=g)[: self._n_negatives()].tolist()
        chosen = self.others + [self.negatives[i] for i in pick]
        order = torch.randperm(len(chosen), generator=g).tolist()
        return iter([chosen[i] for i in order])
