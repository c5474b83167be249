"""A training run folder, read back for inference (no torch import here).

A run folder is what :func:`weakseg.training.train.train` writes: ``config.yaml``, ``class_map.json``,
``splits.json`` and ``weights/{best,last}.ckpt``; ``run.json`` (when present) records the masks the
student was trained on under ``"pseudo"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weakseg.annotations.schema import ClassMap
from weakseg.errors import DataError

CHECKPOINTS = ("best", "last")
#: Written by training (:mod:`weakseg.training.calibrate`); read here without importing torch.
DECISION_FILE = "decision.json"


def read_decision(run_dir: Path) -> dict[str, Any] | None:
    """A run folder's ``decision.json`` as written, ``None`` without one."""
    return read_json_object(Path(run_dir) / DECISION_FILE, "a valid decision file")


def read_json_object(path: Path, what: str) -> dict[str, Any] | None:
    """A JSON object file (``None`` when missing); anything else is an error naming the file."""
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"is not {what}: {exc}") from None
    if not isinstance(doc, dict):
        raise DataError(path, f"is not {what}: expected a JSON object")
    return doc


def is_run_dir(path: str | Path) -> bool:
    """True for a training run folder (``config.yaml`` beside a ``weights/`` folder)."""
    path = Path(path)
    return path.is_dir() and (path / "config.yaml").is_file() and (path / "weights").is_dir()


@dataclass(frozen=True)
class RunInfo:
    path: Path
    class_map: ClassMap

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def splits_path(self) -> Path:
        return self.path / "splits.json"

    def checkpoint(self, which: str = "best") -> Path:
        """``best``, ``last`` or a path to a checkpoint file; missing ``best`` falls back to ``last``."""
        if which not in CHECKPOINTS:
            path = Path(which)
            if not path.is_file():
                raise DataError(
                    path, f"checkpoint not found (use {' or '.join(CHECKPOINTS)} or a .ckpt file)"
                )
            return path
        path = self.path / "weights" / f"{which}.ckpt"
        if path.is_file():
            return path
        other = self.path / "weights" / "last.ckpt"
        if which == "best" and other.is_file():
            return other
        raise DataError(path, "checkpoint not found; has the run finished an epoch?")

    def extra(self) -> dict[str, Any]:
        """The contents of ``run.json`` ({} when the run has none)."""
        return read_json_object(self.path / "run.json", "JSON") or {}

    def decision(self) -> dict[str, Any] | None:
        """``decision.json`` as written by training (head, threshold, vote), ``None`` without one."""
        return read_decision(self.path)

    def pseudo_path(self) -> Path | None:
        """The pseudo-label store (or mask dataset) the student was trained on, when recorded."""
        value = self.extra().get("pseudo")
        if not value:
            return None
        path = Path(value)
        if not path.is_absolute():
            path = self.path / path
        return path


def load_run(path: str | Path) -> RunInfo:
    """Check that ``path`` is a run folder and read its class map."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "does not exist")
    if not is_run_dir(path):
        raise DataError(
            path, "is not a training run folder (expected config.yaml and weights/); run weakseg train"
        )
    class_map_path = path / "class_map.json"
    if not class_map_path.is_file():
        raise DataError(class_map_path, "is missing; the run folder is incomplete")
    try:
        class_map = ClassMap.from_dict(json.loads(class_map_path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(class_map_path, f"is not a valid class map: {exc}") from None
    return RunInfo(path, class_map)
