"""The decision rule: composed probabilities, the threshold histogram, and choosing on validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weakseg.evaluation.confusion import confusion_matrix, segmentation_metrics
from weakseg.student.decision import (
    THRESHOLDS,
    Decision,
    ThresholdHistogram,
    choose_decision,
    class_probabilities,
    labels_from_probabilities,
)


def test_binary_source_gates_with_the_binary_head_and_keeps_fine_proportions() -> None:
    fine = torch.log(torch.tensor([0.7, 0.2, 0.1])).view(1, 3, 1, 1)
    binary = torch.log(torch.tensor([0.1, 0.9])).view(1, 2, 1, 1)
    p = class_probabilities({"fine": fine, "binary": binary}, "binary")[0, :, 0, 0]
    assert torch.allclose(p, torch.tensor([0.1, 0.9 * 2 / 3, 0.9 / 3]), atol=1e-6)
    assert torch.allclose(
        class_probabilities({"fine": fine, "binary": binary}, "fine")[0, :, 0, 0],
        torch.tensor([0.7, 0.2, 0.1]),
        atol=1e-6,
    )


def test_labels_follow_the_threshold_not_the_argmax() -> None:
    prob = np.array([[0.6, 0.3], [0.3, 0.3], [0.1, 0.4]], np.float32).reshape(3, 1, 2)
    assert labels_from_probabilities(prob, 0.5).tolist() == [[0, 2]]
    assert labels_from_probabilities(prob, 0.35).tolist() == [[1, 2]]  # 1 - 0.6 = 0.4 >= 0.35


def test_histogram_matrices_equal_direct_confusion_matrices() -> None:
    rng = np.random.default_rng(0)
    prob = torch.from_numpy(rng.dirichlet([1, 1, 1], size=(2, 9, 11)).astype(np.float32)).permute(0, 3, 1, 2)
    target = torch.from_numpy(rng.integers(0, 3, size=(2, 9, 11)))
    target[0, 0, :4] = 255
    hist = ThresholdHistogram(2)
    hist.update(prob, target, 255)
    for i, t in enumerate(THRESHOLDS):
        direct = np.zeros((3, 3), np.int64)
        for b in range(2):
            labels = labels_from_probabilities(prob[b].numpy(), t)
            direct += confusion_matrix(target[b].numpy().clip(0, 2), labels, 3, target[b].numpy() != 255)
        assert np.array_equal(hist.matrix(i), direct), t


def test_histogram_ties_go_to_the_first_defect_class_as_the_labels_do() -> None:
    prob = torch.tensor([0.2, 0.4, 0.4]).reshape(1, 3, 1, 1).repeat(1, 1, 2, 2)
    target = torch.full((1, 2, 2), 2)
    hist = ThresholdHistogram(2)
    hist.update(prob, target, 255)
    assert labels_from_probabilities(prob[0].numpy(), 0.5)[0, 0] == 1
    assert hist.matrix(THRESHOLDS.index(0.5))[2].tolist() == [0, 4, 0]


def test_choose_decision_finds_the_threshold_that_fits_a_shy_head() -> None:
    # The fine head is under-confident: defect pixels get 1 - p0 = 0.3, background 0.1.
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:5, 2:5] = 1
    g = torch.where(target == 1, 0.3, 0.1).float()
    prob = torch.stack([1 - g, g], dim=1)
    outputs = {"fine": torch.log(prob)}

    def score(m: np.ndarray) -> float:
        return segmentation_metrics(m, ("d",))["binary_iou"] or 0.0

    d = choose_decision([(outputs, target)], 1, score, "binary_iou")
    assert d.source == "fine" and 0.1 < d.threshold <= 0.3 and d.value == pytest.approx(1.0)
    at_half = labels_from_probabilities(prob[0].numpy(), 0.5)
    assert not at_half.any(), "argmax would find nothing"
    assert Decision.from_dict(d.to_dict()) == d
    with pytest.raises(ValueError, match="threshold"):
        Decision(threshold=1.5)


def test_component_vote_gives_each_region_one_class() -> None:
    prob = np.zeros((3, 4, 8), np.float32)
    prob[0] = 1.0
    # Region A (columns 0-2): mostly class 1, one pixel leaning to class 2. Region B (column 6): class 2.
    prob[:, 1, 0:3] = [[0.1] * 3, [0.6, 0.6, 0.3], [0.3, 0.3, 0.6]]
    prob[:, 2, 6] = [0.1, 0.2, 0.7]
    per_pixel = labels_from_probabilities(prob, 0.5, "pixel")
    per_region = labels_from_probabilities(prob, 0.5, "component")
    assert per_pixel[1, :3].tolist() == [1, 1, 2]
    assert per_region[1, :3].tolist() == [1, 1, 1] and per_region[2, 6] == 2
    assert (per_region > 0).sum() == (per_pixel > 0).sum() == 4
    with pytest.raises(ValueError, match="vote"):
        labels_from_probabilities(prob, 0.5, "image")
