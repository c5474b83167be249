"""The decision rule: from the heads' outputs to one label per pixel, chosen on validation.

Class weights of 0.4 / 4.0 move the fine head's argmax to a posterior of about 9 % defect, and the
binary head, trained with an asymmetric Dice, has a calibration of its own: neither argmax is the
operating point an inspection line wants. A :class:`Decision` names which head says "defect"
(``fine``: one minus the background probability; ``binary``: the binary head) and the threshold on
that probability; the defect class is the fine head's most likely defect class. Training picks both
on the validation split (:func:`choose_decision`) and stores them in the run; the predictor, the
ONNX graph and evaluation apply them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

SOURCES = ("fine", "binary")
VOTES = ("pixel", "component")
#: Thresholds tried on validation (finer at the top: class weights that favour defects push the
#: best operating point of an over-eager head there).
THRESHOLDS = (*(round(t, 2) for t in np.arange(0.05, 0.96, 0.05)), 0.97, 0.98, 0.99)


@dataclass(frozen=True)
class Decision:
    source: str = "fine"
    threshold: float = 0.5
    metric: str | None = None  # what it was chosen on, and the value reached on validation
    value: float | None = None
    vote: str = "component"  # one class per connected defect region (see labels_from_probabilities)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"decision source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.vote not in VOTES:
            raise ValueError(f"decision vote must be one of {', '.join(VOTES)}, got {self.vote!r}")
        if not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"decision threshold must lie in (0, 1), got {self.threshold}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> Decision:
        return cls(**{k: doc[k] for k in ("source", "threshold", "metric", "value", "vote") if k in doc})


def class_probabilities(outputs: dict[str, Tensor], source: str = "fine") -> Tensor:
    """``[B, K+1, H, W]`` probabilities whose ``1 - p[0]`` is the chosen head's defect probability and
    whose defect channels keep the fine head's proportions (``source="fine"``: the fine softmax)."""
    prob = torch.softmax(outputs["fine"].float(), dim=1)
    binary = outputs.get("binary")
    if source == "fine" or binary is None:
        return prob
    gate = torch.softmax(binary.float(), dim=1)[:, 1:2]
    defects = prob[:, 1:] / prob[:, 1:].sum(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.cat([1.0 - gate, gate * defects], dim=1)


def labels_from_probabilities(prob: np.ndarray, threshold: float = 0.5, vote: str = "pixel") -> np.ndarray:
    """``(K+1, H, W)`` probabilities -> class ids: defect where ``1 - p[0] >= threshold``, then the most
    likely defect class (uint8, or uint16 beyond 255 classes).

    ``vote="component"`` gives each 8-connected defect region the one class with the largest summed
    probability over it: a defect is one thing, and per-pixel class noise (a crack's pixels split
    between crack and break) costs every class IoU that a per-region vote does not.
    """
    dtype = np.uint8 if prob.shape[0] <= 256 else np.uint16
    if prob.shape[0] == 1:
        return np.zeros(prob.shape[1:], dtype)
    defect = 1.0 - prob[0] >= threshold
    if vote == "pixel" or prob.shape[0] == 2:
        cls = prob[1:].argmax(axis=0) + 1
        return np.where(defect, cls, 0).astype(dtype)
    if vote != "component":
        raise ValueError(f"vote must be one of {', '.join(VOTES)}, got {vote!r}")
    n, regions = cv2.connectedComponents(defect.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(defect.shape, dtype)
    flat = regions.ravel()
    sums = np.stack([np.bincount(flat, weights=p.ravel(), minlength=n) for p in prob[1:]])
    region_class = sums.argmax(axis=0) + 1
    region_class[0] = 0  # label 0 is the background of connectedComponents
    return region_class[regions].astype(dtype)


class ThresholdHistogram:
    """Counts of (defect-probability bin, true class, most likely defect class) over many pixels, from
    which the confusion matrix at every threshold of :data:`THRESHOLDS` follows exactly."""

    def __init__(self, num_classes: int) -> None:
        self.k = num_classes  # defect classes
        self.edges = np.asarray(THRESHOLDS)
        self.counts = np.zeros((len(self.edges) + 1, num_classes + 1, max(num_classes, 1)), np.int64)

    def update(self, prob: Tensor, target: Tensor, ignore_index: int) -> None:
        """``prob`` ``[B, K+1, H, W]``, ``target`` ``[B, H, W]``."""
        valid = target != ignore_index
        if not bool(valid.any()):
            return
        g = (1.0 - prob[:, 0])[valid].cpu().numpy()
        t = target[valid].clamp(0, self.k).cpu().numpy()
        # max().indices, not argmax(): the same first index on ties, and ten times faster over the
        # channel axis of a [B, K, H, W] slice on a CPU (argmax there cost ~0.1 s per batch).
        c = (prob[:, 1:].max(dim=1).indices[valid].cpu().numpy()) if self.k else np.zeros_like(t)
        b = np.searchsorted(self.edges, g, side="right")  # pixels in bin >= i pass thresholds[:i]
        # One bincount over the flat (bin, true, predicted) index: np.add.at on a batch's ~10^6
        # pixels took longer than the model's forward pass on that batch.
        flat = np.ravel_multi_index((b, t, c), self.counts.shape)
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)

    def matrix(self, index: int) -> np.ndarray:
        """The ``(K+1) x (K+1)`` confusion matrix (rows true, columns predicted) at ``THRESHOLDS[index]``."""
        passing = self.counts[index + 1 :].sum(axis=0)  # bins whose probability >= the threshold
        failing = self.counts[: index + 1].sum(axis=0)
        m = np.zeros((self.k + 1, self.k + 1), np.int64)
        m[:, 0] = failing.sum(axis=1)
        m[:, 1:] = passing[:, : self.k]
        return m


def decision_histograms(num_classes: int, sources: Sequence[str] = SOURCES) -> dict[str, ThresholdHistogram]:
    return {s: ThresholdHistogram(num_classes) for s in sources}


def update_histograms(
    hists: dict[str, ThresholdHistogram], outputs: dict[str, Tensor], target: Tensor, ignore_index: int
) -> None:
    """Add one batch of model outputs to every source's histogram (binary only where the model has it)."""
    for source, hist in hists.items():
        if source == "binary" and outputs.get("binary") is None:
            continue
        hist.update(class_probabilities(outputs, source), target, ignore_index)


def best_decision(
    hists: dict[str, ThresholdHistogram], score: Callable[[np.ndarray], float], metric: str
) -> tuple[Decision, np.ndarray | None]:
    """The source and threshold maximising ``score(confusion matrix)``, and that matrix; ties go to
    the threshold nearest 0.5, then to the first source."""
    best: tuple[float, float, int, str, float, np.ndarray] | None = None
    for rank, (source, hist) in enumerate(hists.items()):
        if not hist.counts.any():
            continue
        for i, t in enumerate(THRESHOLDS):
            matrix = hist.matrix(i)
            key = (float(score(matrix)), -abs(t - 0.5), -rank)
            if best is None or key > best[:3]:
                best = (*key, source, t, matrix)
    if best is None:
        return Decision(metric=metric), None
    return Decision(source=best[3], threshold=float(best[4]), metric=metric, value=best[0]), best[5]


def choose_decision(
    batches: Iterable[tuple[dict[str, Tensor], Tensor]],
    num_classes: int,
    score: Callable[[np.ndarray], float],
    metric: str,
    ignore_index: int = 255,
    sources: Sequence[str] = SOURCES,
) -> Decision:
    """:func:`best_decision` over ``batches`` of (model outputs, target)."""
    hists = decision_histograms(num_classes, sources)
    for outputs, target in batches:
        update_histograms(hists, outputs, target, ignore_index)
    return best_decision(hists, score, metric)[0]
