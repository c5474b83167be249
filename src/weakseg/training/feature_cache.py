"""Frozen-backbone features, computed once per image and flip, memory-mapped from disk.

The backbone never changes during training, so running it every epoch is pure waste: on a CPU it is
most of the cost of a step. The cache stores each feature level as one float16 array of shape
``[n_images * n_flips, C, h, w]`` (``level<k>.f16``) plus ``index.json``; epochs then read features
back through ``numpy.memmap`` and only the decoder runs. ``index.json`` is written last and atomically,
and records a key (backbone, weights, training size, image list): a cache built for anything else, or
left incomplete by a killed job, is rebuilt rather than trusted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from weakseg.utils.atomic import atomic_write_json
from weakseg.utils.hashing import stable_hash

FLIPS = ("none", "hflip")


def apply_flip(x: torch.Tensor, flip: str) -> torch.Tensor:
    """Flip the last axis of an image/target/feature tensor (``none`` is the identity)."""
    if flip == "none":
        return x
    if flip == "hflip":
        return torch.flip(x, dims=(-1,))
    raise ValueError(f"unknown flip {flip!r}; known: {', '.join(FLIPS)}")


def cache_key(parts: dict) -> str:
    return stable_hash(parts, length=20)


class FeatureCache:
    """Read side of a built cache; build with :meth:`build`."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.index = json.loads((self.folder / "index.json").read_text())
        self.flips: list[str] = self.index["flips"]
        self.levels = [
            np.memmap(self.folder / f"level{k}.f16", dtype=np.float16, mode="r", shape=tuple(shape))
            for k, shape in enumerate(self.index["shapes"])
        ]

    def __len__(self) -> int:
        return self.index["images"]

    def get(self, image_index: int, flip: str = "none") -> list[torch.Tensor]:
        row = image_index * len(self.flips) + self.flips.index(flip)
        return [torch.from_numpy(np.asarray(level[row], dtype=np.float32)) for level in self.levels]

    @classmethod
    def build(
        cls,
        folder: str | Path,
        features: Callable[[torch.Tensor], Sequence[torch.Tensor]],
        images: Callable[[int], torch.Tensor],
        n_images: int,
        key: dict,
        *,
        flips: Sequence[str] = FLIPS,
        batch_size: int = 8,
        progress: Callable[[int], None] | None = None,
    ) -> FeatureCache:
        """Compute ``features(batch)`` for every image (``images(i)`` -> ``[3, H, W]``) and flip.

        Reuses an existing cache with the same key.
        """
        folder = Path(folder)
        digest = cache_key({**key, "flips": list(flips), "images": n_images})
        index_path = folder / "index.json"
        if index_path.is_file():
            try:
                if json.loads(index_path.read_text()).get("key") == digest:
                    return cls(folder)
            except json.JSONDecodeError:
                pass
            index_path.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        arrays: list[np.memmap] = []
        rows = n_images * len(flips)
        with torch.inference_mode():
            for start in range(0, n_images, batch_size):
                idx = list(range(start, min(start + batch_size, n_images)))
                batch = torch.stack([images(i) for i in idx])
                for f, flip in enumerate(flips):
                    maps = [
                        m.float().cpu().numpy().astype(np.float16) for m in features(apply_flip(batch, flip))
                    ]
                    if not arrays:
                        arrays = [
                            np.memmap(
                                folder / f"level{k}.f16",
                                dtype=np.float16,
                                mode="w+",
                                shape=(rows, *m.shape[1:]),
                            )
                            for k, m in enumerate(maps)
                        ]
                    for level, m in zip(arrays, maps, strict=True):
                        level[[i * len(flips) + f for i in idx]] = m
                if progress is not None:
                    progress(len(idx))
        for level in arrays:
            level.flush()
        atomic_write_json(
            index_path,
            {
                "key": digest,
                "flips": list(flips),
                "images": n_images,
                "shapes": [list(a.shape) for a in arrays],
            },
        )
        return cls(folder)
