"""Evaluation against human masks: one shared metrics module for teachers' pseudo-masks and students.

Metrics follow METHODS.md 1.6 exactly (one dataset-level confusion matrix; mIoU with background,
anomaly mIoU and F1 over the defect classes, binary IoU/recall/precision/F1 with defect classes
merged). Undefined ratios (0/0, e.g. the IoU of a class absent from both ground truth and
prediction) are ``None`` and are left out of every mean; see :mod:`weakseg.evaluation.confusion`.
"""

from weakseg.evaluation.confusion import (
    ConfusionMatrix,
    binary_counts,
    confusion_matrix,
    per_image_binary,
    segmentation_metrics,
)
from weakseg.evaluation.drawing import render_gallery
from weakseg.evaluation.files import write_evaluation
from weakseg.evaluation.scoring import EvaluationResult, ImageScore, evaluate_annotations

__all__ = [
    "ConfusionMatrix",
    "EvaluationResult",
    "ImageScore",
    "binary_counts",
    "confusion_matrix",
    "evaluate_annotations",
    "per_image_binary",
    "render_gallery",
    "segmentation_metrics",
    "write_evaluation",
]
