"""What an evaluation returns: the scores, the files written and, for a model, its teacher beside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weakseg.evaluation.scoring import EvaluationResult


@dataclass
class EvaluateOutput:
    result: EvaluationResult
    files: dict[str, Path]
    title: str
    kind: str = "store"  # "store", "predictions", "run" or "onnx"
    teacher: EvaluationResult | None = None  # models: the teacher's masks on the same images
    teacher_note: str | None = None  # models: why the teacher row is missing
    comparison: dict[str, Any] | None = None  # models: {"student", "teacher", "gain", ...}
    warnings: list[str] = field(default_factory=list)  # e.g. ground-truth images without a prediction

    def to_dict(self) -> dict[str, Any]:
        """A store's metrics, or for a model ``{"student", "teacher", "gain", ...}`` side by side."""
        return self.comparison if self.comparison is not None else self.result.to_dict()
