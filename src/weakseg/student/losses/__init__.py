"""Student losses (pure PyTorch): Boxes2Pixels noise-robust terms, BoxInst box terms, BoxTeacher, BPM."""

from weakseg.student.losses.box_supervision import (
    LAB_THETA,
    image_similarity,
    pairwise_affinity_loss,
    projection_loss,
    rgb_to_lab,
    warmup_factor,
)
from weakseg.student.losses.bpm import (
    boundary_preserving_map,
    bpm_weighted_bce,
    bpm_weighted_ce,
    fine_foreground_prob,
)
from weakseg.student.losses.combined import LossConfig, StudentLoss
from weakseg.student.losses.mean_teacher import (
    mean_teacher_loss,
    noise_aware_pixel_loss,
    noise_reduced_affinity_loss,
    pseudo_affinity_weights,
    teacher_pseudo_masks,
)
from weakseg.student.losses.noise_robust import asymmetric_dice, binary_fg_prob, weighted_ce
from weakseg.student.losses.self_correction import IGNORE_INDEX, self_correct

__all__ = [
    "IGNORE_INDEX",
    "LAB_THETA",
    "LossConfig",
    "StudentLoss",
    "asymmetric_dice",
    "binary_fg_prob",
    "boundary_preserving_map",
    "bpm_weighted_bce",
    "bpm_weighted_ce",
    "fine_foreground_prob",
    "image_similarity",
    "mean_teacher_loss",
    "noise_aware_pixel_loss",
    "noise_reduced_affinity_loss",
    "pairwise_affinity_loss",
    "projection_loss",
    "pseudo_affinity_weights",
    "rgb_to_lab",
    "self_correct",
    "teacher_pseudo_masks",
    "warmup_factor",
    "weighted_ce",
]
