"""After training: choose the run's decision rule (which head, which threshold, which class vote) on the
val split."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from weakseg.data.preprocess import IGNORE_INDEX
from weakseg.evaluation.confusion import confusion_matrix, segmentation_metrics
from weakseg.student.decision import (
    VOTES,
    Decision,
    choose_decision,
    class_probabilities,
    labels_from_probabilities,
)
from weakseg.student.segmenter import Segmenter
from weakseg.training.data import collate
from weakseg.utils.atomic import atomic_write_json

DECISION_FILE = "decision.json"  # read by weakseg.inference.run (which must not import torch)


def load_checkpoint_weights(model: nn.Module, checkpoint: str | Path) -> None:
    """The checkpoint's model tensors (EMA-averaged where the run kept an EMA) into ``model``: a
    student, or any module a Lightning module of this package holds as ``self.model``."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict({k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")})


@torch.inference_mode()
def _outputs(
    model: Segmenter, dataset: Dataset, batch_size: int
) -> Iterator[tuple[dict[str, Tensor], Tensor]]:
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate):  # type: ignore[arg-type]
        features = batch["features"]
        if features is None:
            features = model.features(batch["image"])
        yield model.decode(features, batch["image"]), batch["target"]


def calibrate(
    model: Segmenter,
    val: Dataset,
    class_names: tuple[str, ...],
    metric: str,
    out: Path,
    batch_size: int = 8,
) -> Decision:
    """Choose the decision maximising ``metric`` on ``val`` and write it to ``out/decision.json``."""
    model.eval()

    def score(matrix) -> float:
        value = segmentation_metrics(matrix, class_names)[metric]
        return -1.0 if value is None else float(value)

    decision = choose_decision(
        _outputs(model, val, batch_size), len(class_names), score, metric, ignore_index=IGNORE_INDEX
    )
    # The class vote (per pixel or per region) at that threshold: a second pass, since regions depend
    # on the threshold and cannot be counted in the threshold histogram.
    matrices = {vote: np.zeros((len(class_names) + 1,) * 2, np.int64) for vote in VOTES}
    for outputs, target in _outputs(model, val, batch_size):
        prob = class_probabilities(outputs, decision.source).cpu().numpy()
        for p, t in zip(prob, target.cpu().numpy(), strict=True):
            valid = t != IGNORE_INDEX
            for vote, matrix in matrices.items():
                labels = labels_from_probabilities(p, decision.threshold, vote)
                matrix += confusion_matrix(t.clip(0, len(class_names)), labels, len(class_names) + 1, valid)
    scores = {vote: score(m) for vote, m in matrices.items()}
    vote = max(VOTES, key=lambda v: (scores[v], v == "pixel"))  # a tie keeps the simpler rule
    decision = replace(decision, vote=vote, value=scores[vote])
    atomic_write_json(out / DECISION_FILE, decision.to_dict())
    return decision
