"""Shared fixtures: seeded randomness, offline hubs, and the real data beside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from weakseg.data.shared import shared_dataset

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _require(name: str) -> Path:
    path = shared_dataset(name)
    if path is None:
        pytest.skip(
            f"shared dataset {name!r} absent (set WEAKSEG_DATA or put ../shared/data beside the repo)"
        )
    return path


@pytest.fixture(scope="session")
def magnetic_tile() -> Path:
    return _require("magnetic_tile")


@pytest.fixture(scope="session")
def crackforest() -> Path:
    return _require("crackforest")


def _run_cli(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``weakseg ARGS`` in a fresh interpreter, as a user runs it (exit codes and stderr included)."""
    return subprocess.run(
        [sys.executable, "-m", "weakseg", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return _run_cli
