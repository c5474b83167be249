"""Locate the real datasets that live beside the repository (never inside it).

Tests and benchmarks find ``shared/data`` through this one helper: ``$WEAKSEG_DATA`` if set,
otherwise ``../shared/data`` relative to the repository root or the current folder.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[3]


def shared_data_root() -> Path | None:
    """The folder holding ``magnetic_tile/`` and ``crackforest/``, or ``None`` when absent."""
    env = os.environ.get("WEAKSEG_DATA")
    candidates = [Path(env)] if env else []
    candidates += [_REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


def shared_dataset(name: str) -> Path | None:
    """``<shared data>/<name>`` when it exists."""
    root = shared_data_root()
    if root is None or not (root / name).is_dir():
        return None
    return root / name
