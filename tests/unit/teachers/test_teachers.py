"""Registry, shared refinement and quality, and the box / grabcut / fusion teachers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from weakseg.errors import WeaksegError
from weakseg.teachers import create_teacher, teacher_names
from weakseg.teachers.base import TeacherOutput
from weakseg.teachers.fusion import fuse_candidates
from weakseg.teachers.refine import RefineConfig, box_slices, refine, score


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_registry_lists_all_teachers() -> None:
    assert {"box", "grabcut", "contrast", "sam", "fusion"} <= set(teacher_names())
    with pytest.raises(WeaksegError, match="unknown teacher"):
        create_teacher("nope")
    with pytest.raises(WeaksegError, match="bad option"):
        create_teacher("grabcut", nonsense=1)


def test_box_slices_dilate_and_clip() -> None:
    assert box_slices((2.0, 3.0, 5.0, 7.0), (10, 10)) == (slice(3, 7), slice(2, 5))
    assert box_slices((0.0, 0.0, 10.0, 10.0), (10, 10), margin=3) == (slice(0, 10), slice(0, 10))
    assert box_slices((2.2, 3.5, 4.1, 6.9), (10, 10)) == (slice(3, 7), slice(2, 5))


def test_refine_clips_drops_specks_fills_holes() -> None:
    mask = np.zeros((30, 30), dtype=bool)
    mask[5:15, 5:15] = True
    mask[9:11, 9:11] = False  # a hole
    mask[20:22, 20:22] = True  # a speck, and outside the box
    mask[5:15, 15:25] = True  # leaks outside the box
    pm = refine(TeacherOutput(mask, 0.8), (5.0, 5.0, 15.0, 15.0), RefineConfig())
    expected = np.zeros_like(mask)
    expected[5:15, 5:15] = True
    assert np.array_equal(pm.mask, expected)
    assert pm.fill_ratio == 1.0 and pm.box_iou == 1.0
    assert pm.quality == pytest.approx(0.8 * 0.5)  # fills its whole box: the degenerate answer


def test_empty_mask_is_kept_and_flagged() -> None:
    pm = score(np.zeros((10, 10), dtype=bool), (1.0, 1.0, 5.0, 5.0), 0.9)
    assert pm.empty and pm.quality == 0.0 and pm.mask.shape == (10, 10)


def test_quality_prefers_masks_that_reach_their_box() -> None:
    box = (0.0, 0.0, 20.0, 20.0)
    reaching = np.zeros((20, 20), dtype=bool)
    np.fill_diagonal(reaching, True)
    shrunk = np.zeros((20, 20), dtype=bool)
    shrunk[8:12, 8:12] = True
    assert score(reaching, box, 1.0).quality > score(shrunk, box, 1.0).quality


def test_box_teacher_fills_boxes(scene: tuple) -> None:
    image, boxes, _ = scene
    out = create_teacher("box").label(image, boxes, np.array([1, 2]))
    assert [int(pm.mask.sum()) for pm in out] == [13 * 13, 12 * 10]


@pytest.mark.parametrize("color", [False, True])
def test_grabcut_finds_the_defects(scene: tuple, color: bool) -> None:
    image, boxes, truth = scene
    if color:
        image = np.stack([image, image, image], axis=2)
    teacher = create_teacher("grabcut")
    out = teacher.label(image, boxes, np.array([1, 2]))
    assert [_iou(pm.mask, t) for pm, t in zip(out, truth, strict=True)] > [0.7, 0.7]
    assert all(0 < pm.quality <= 1 for pm in out)
    again = teacher.label(image, boxes, np.array([1, 2]))
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(out, again, strict=True))


def test_teachers_pickle_for_worker_processes() -> None:
    for name in ("box", "grabcut", "contrast", "fusion"):
        teacher = create_teacher(name)
        assert pickle.loads(pickle.dumps(teacher)).config_hash() == teacher.config_hash()


def test_config_hash_tracks_options() -> None:
    assert create_teacher("grabcut").config_hash() != create_teacher("grabcut", iterations=3).config_hash()
    assert create_teacher("grabcut").config_hash() == create_teacher("grabcut").config_hash()


def test_fusion_majority_vote_and_boxseg_score(scene: tuple) -> None:
    image, boxes, truth = scene
    fusion = create_teacher("fusion", members="box,grabcut,contrast")
    out = fusion.label(image, boxes, np.array([1, 2]))
    assert [_iou(pm.mask, t) for pm, t in zip(out, truth, strict=True)] > [0.7, 0.7]
    assert all(0 < pm.quality <= 1 for pm in out)


def test_fuse_candidates_by_hand() -> None:
    from weakseg.teachers.refine import score as make

    box = (0.0, 0.0, 4.0, 4.0)
    a = np.zeros((4, 4), dtype=bool)
    a[:2] = True  # 8 px
    b = a.copy()
    c = np.ones((4, 4), dtype=bool)  # the box
    cands = [make(a, box, 1.0), make(b, box, 1.0), make(c, box, 1.0)]
    # qualities: a, b -> 1.0 * box_iou 0.5 = 0.5 each; c -> 1.0 * 1.0 * 0.5 (full box) = 0.5
    fused, s = fuse_candidates(cands)
    assert np.array_equal(fused, a)  # two of three equal votes
    # a_k: a, b -> 8 * 1 / 8 = 1; c -> 16 * 0.5 / 8 = 1 (clamped); q_k = sqrt(1 * a_k) = 1
    assert s == pytest.approx(1.0)
    cands[2] = make(c, box, 0.0)
    _, s0 = fuse_candidates(cands)
    assert s0 == pytest.approx((1 + 1 + np.sqrt(0.5)) / 3)
    empty = [make(np.zeros((4, 4), dtype=bool), box, 1.0)] * 2
    fused, s = fuse_candidates(empty)
    assert not fused.any() and s == 0.0
