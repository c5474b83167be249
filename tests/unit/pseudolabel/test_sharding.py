"""Shard ownership is stable and every image has exactly one owner."""

from __future__ import annotations

import pytest

from weakseg.errors import WeaksegError
from weakseg.pseudolabel.sharding import Shard, resolve_shard, shard_of


def test_every_image_has_exactly_one_owner() -> None:
    names = [f"dir/img_{i}.png" for i in range(500)]
    shards = [Shard(i, 4) for i in range(4)]
    owners = [sum(s.owns(n) for s in shards) for n in names]
    assert owners == [1] * len(names)
    sizes = [sum(s.owns(n) for n in names) for s in shards]
    assert min(sizes) > 80  # roughly balanced


def test_shard_of_is_pinned() -> None:
    # Pinned values: a change of hash would silently reshuffle finished work in existing stores.
    assert [shard_of(f"{i}.png", 5) for i in range(8)] == [4, 2, 4, 0, 1, 0, 1, 3]


def test_resolve_from_flags_and_env() -> None:
    assert resolve_shard(None, None, env={}) == Shard(0, 1)
    assert resolve_shard(1, 3, env={"RANK": "0", "WORLD_SIZE": "2"}) == Shard(1, 3)
    assert resolve_shard(None, None, env={"RANK": "1", "WORLD_SIZE": "2"}) == Shard(1, 2)
    slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "3"}
    assert resolve_shard(None, None, env=slurm) == Shard(2, 4)


def test_bad_shards_are_refused() -> None:
    with pytest.raises(WeaksegError):
        resolve_shard(2, 2, env={})
    with pytest.raises(WeaksegError):
        resolve_shard(1, None, env={})
