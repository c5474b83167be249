"""The point of it all, on the synthetic set: a short training gives masks far better than box fill.

The student learns from the contrast teacher's masks (the classical default) and then refines the
test boxes; box fill of the same boxes is the baseline every box route must beat.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from weakseg.annotations.readers import load_annotations
from weakseg.annotations.splits import apply_splits, load_splits
from weakseg.data.synthetic import generate_synthetic
from weakseg.evaluation.scoring import evaluate_annotations
from weakseg.inference.refine import refine
from weakseg.pseudolabel.runner import pseudo_label
from weakseg.student.losses import LossConfig
from weakseg.student.model import DecoderConfig
from weakseg.training.train import TrainConfig, train

#: Binary IoU points the refined masks must gain over box fill of the same test boxes.
MARGIN = 0.10


@pytest.fixture
def two_threads():
    """Pinned: a short run on 67 training images follows the float order of its reductions, which the
    thread count changes (the earlier 128 px version gave 0.40 with two threads and 0.27 with one).
    CI's machine has two cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_a_short_training_beats_box_fill(tmp_path: Path, two_threads: None) -> None:
    generate_synthetic(tmp_path / "data", n_images=96, size=(192, 192), seed=11)
    pseudo_label(tmp_path / "data", "box", tmp_path / "box")
    pseudo_label(tmp_path / "data", "contrast", tmp_path / "contrast")
    # Balanced class weights and a symmetric Dice: Boxes2Pixels' 0.4 / 4.0 and beta 0.4 push recall,
    # which a contrast teacher that already over-reaches on this set does not need. Where the
    # teacher's mask failed, the box-class term still names the class (0.40 with it, 0.28 without, as
    # measured on the earlier 128 px version of this run).
    loss = LossConfig(class_weights=[1.0] * 5, dice_beta=1.0, fine_dice_weight=1.0, box_class_weight=0.5)
    # The default decoder (stride-2 refiner) at the images' own 192 px. At 128 px and stride 4 this run
    # was a coin toss that depended on the CPU's float order: on an AVX2-only machine it gave the
    # student 0.27-0.39 against box fill's 0.27-0.34 and the teacher's 0.29-0.56 (training seeds 0-2);
    # here seeds 0 and 1 gave 0.474 / 0.525 against box fill 0.229 / 0.301 and the teacher 0.343 / 0.494.
    decoder = DecoderConfig()
    config = TrainConfig(
        epochs=30, size=(192, 192), batch_size=8, lr=3e-3, seed=0, patience=30, loss=loss, decoder=decoder
    )
    train(tmp_path / "data", tmp_path / "contrast", tmp_path / "run", config)

    gt = load_annotations(tmp_path / "data")
    apply_splits(gt, load_splits(tmp_path / "run" / "splits.json"))
    test = gt.subset("test")
    test_defects = test.with_files(r.file_name for r in test.images if r.instances)
    assert test_defects.images, "the split must hold test images with defects"
    refine(tmp_path / "run", test_defects, tmp_path / "refined")
    refined = load_annotations(tmp_path / "refined" / "pseudo.json", "coco")
    box_fill = load_annotations(tmp_path / "box" / "pseudo.json", "coco").with_files(
        r.file_name for r in test_defects.images
    )
    student = evaluate_annotations(refined, test_defects, worst=0).metrics["binary_iou"]
    teacher = evaluate_annotations(box_fill, test_defects, worst=0).metrics["binary_iou"]
    teacher_masks = load_annotations(tmp_path / "contrast" / "pseudo.json", "coco").with_files(
        r.file_name for r in test_defects.images
    )
    contrast = evaluate_annotations(teacher_masks, test_defects, worst=0).metrics["binary_iou"]
    print(
        f"binary IoU on the test boxes: student {student:.3f}, box fill {teacher:.3f}, teacher {contrast:.3f}"
    )
    assert student >= teacher + MARGIN, (student, teacher)
    assert student >= contrast, "the student corrects its own teacher"
