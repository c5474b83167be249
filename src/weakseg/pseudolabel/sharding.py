"""Which images a worker owns: a stable hash of the image path, so adding images moves no finished work.

The shard index and count come from flags, else from torchrun (``RANK``/``WORLD_SIZE``), else from a
SLURM job array (``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT``, offset by ``SLURM_ARRAY_TASK_MIN``).
No process group is needed: shards never talk to each other.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

from weakseg.errors import WeaksegError


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise WeaksegError(f"shard {self.index} of {self.count} is not valid (need 0 <= index < count)")

    def owns(self, file_name: str) -> bool:
        return shard_of(file_name, self.count) == self.index

    @property
    def tag(self) -> str:
        return f"{self.index:05d}-of-{self.count:05d}"


def shard_of(file_name: str, count: int) -> int:
    """Stable shard of an image path (independent of list order, Python's hash seed and platform)."""
    digest = hashlib.sha1(file_name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def resolve_shard(index: int | None, count: int | None, env: Mapping[str, str] | None = None) -> Shard:
    """Flags first, then torchrun, then a SLURM array, else the single shard ``0 of 1``."""
    env = os.environ if env is None else env
    if index is not None or count is not None:
        if index is None or count is None:
            raise WeaksegError("--shard and --num-shards go together")
        return Shard(index, count)
    if "WORLD_SIZE" in env and "RANK" in env:
        return Shard(int(env["RANK"]), int(env["WORLD_SIZE"]))
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        offset = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        return Shard(int(env["SLURM_ARRAY_TASK_ID"]) - offset, int(env["SLURM_ARRAY_TASK_COUNT"]))
    return Shard(0, 1)
