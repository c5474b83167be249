"""Benchmark tests train in child processes; keep them and this process on one torch thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread here and in the training processes: on a busy machine two threads wait on
    each other (a 32 px forward pass then takes a second instead of 10 ms); results do not change."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        yield
    torch.set_num_threads(threads)
