"""BoxTeacher's pseudo-mask terms on hand-made tensors (student.losses.mean_teacher)."""

from __future__ import annotations

import math

import pytest
import torch

from weakseg.student.losses.mean_teacher import (
    mean_teacher_loss,
    noise_aware_pixel_loss,
    noise_reduced_affinity_loss,
    pseudo_affinity_weights,
    teacher_pseudo_masks,
    uncertain_boxes,
)


def box(h: int, w: int, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    m[r0:r1, c0:c1] = True
    return m


def logits_of(mask: torch.Tensor, scale: float = 30.0) -> torch.Tensor:
    """Saturated logits that say exactly ``mask``."""
    return (mask.float() * 2 - 1) * scale


def test_pseudo_masks_are_clipped_to_the_box_and_scored_by_the_root_of_their_mean_probability() -> None:
    prob = torch.zeros(1, 8, 8)
    prob[0, 2:4, 2:4] = 0.9
    prob[0, 2:4, 4] = 0.7
    prob[0, 6, 6] = 0.99  # confident, but outside the box
    b = box(8, 8, 1, 5, 1, 5)[None]
    masks, s = teacher_pseudo_masks(prob, b, 0.5)
    assert masks.sum() == 6 and not masks[0, 6, 6]
    assert s.item() == pytest.approx(math.sqrt((4 * 0.9 + 2 * 0.7) / 6), abs=1e-5)
    empty, s0 = teacher_pseudo_masks(torch.full((1, 8, 8), 0.4), b, 0.5)
    assert not empty.any() and s0.item() == 0.0


def test_pixel_loss_is_zero_on_agreement_and_positive_on_disagreement() -> None:
    b = box(8, 8, 1, 7, 1, 7)[None]
    m = box(8, 8, 2, 5, 2, 5)[None]
    s = torch.tensor([0.9])
    assert noise_aware_pixel_loss(m.float(), m, b, s).item() == pytest.approx(0.0, abs=1e-5)
    wrong = (b & ~m).float()
    assert noise_aware_pixel_loss(wrong, m, b, s).item() == pytest.approx(0.9, abs=1e-5)  # s * Dice 1


def test_pixel_loss_ignores_the_student_outside_the_box() -> None:
    b = box(8, 8, 1, 5, 1, 5)[None]
    m = box(8, 8, 2, 4, 2, 4)[None]
    p = m.float().clone()
    p[0, 6:, 6:] = 1.0  # another defect, outside this instance's box
    assert noise_aware_pixel_loss(p, m, b, torch.ones(1)).item() == pytest.approx(0.0, abs=1e-5)


def test_an_instance_with_zero_confidence_adds_nothing_and_does_not_dilute_the_mean() -> None:
    b = box(8, 8, 0, 8, 0, 8)[None].repeat(2, 1, 1)
    m = torch.stack([box(8, 8, 2, 5, 2, 5), box(8, 8, 1, 3, 1, 3)])
    p = torch.stack([box(8, 8, 2, 6, 2, 5).float(), torch.zeros(8, 8)])  # 2nd disagrees completely
    alone = noise_aware_pixel_loss(p[:1], m[:1], b[:1], torch.tensor([0.8]))
    both = noise_aware_pixel_loss(p, m, b, torch.tensor([0.8, 0.0]))
    assert alone.item() > 0.01
    assert both.item() == pytest.approx(alone.item(), abs=1e-6)
    z = torch.stack([logits_of(p[0] > 0.5), torch.full((8, 8), -30.0)])
    aff_alone = noise_reduced_affinity_loss(z[:1], m[:1], b[:1], torch.tensor([0.8]))
    aff_both = noise_reduced_affinity_loss(z, m, b, torch.tensor([0.8, 0.0]))
    assert aff_alone.item() > 0.01
    assert aff_both.item() == pytest.approx(aff_alone.item(), abs=1e-6)
    # Every instance at s = 0: nothing to learn from, a zero that still reaches the student.
    p_grad = p.clone().requires_grad_(True)
    nothing = noise_aware_pixel_loss(p_grad, m, b, torch.zeros(2))
    assert nothing.item() == 0.0 and nothing.requires_grad


def test_affinity_weights_on_a_binary_mask_join_pixels_on_the_same_side_inside_the_box() -> None:
    m = box(10, 10, 3, 7, 3, 7)[None]
    b = box(10, 10, 1, 9, 1, 9)[None]
    w = pseudo_affinity_weights(m, b, 3, 2)  # [1, 8, 10, 10]
    assert w.shape == (1, 8, 10, 10)
    # Neighbour order: the dilated 3 x 3 offsets row-major without the centre; (0, +2) is index 4.
    right = w[0, 4]
    assert right[4, 3] == 1  # both ends on the mask
    assert right[4, 5] == 0  # (4, 5) -> (4, 7): mask to background
    assert right[4, 1] == 0  # (4, 1) -> (4, 3): background to mask
    assert right[1, 1] == 1  # both background, centre in the box
    assert right[0, 0] == 0  # centre outside the box
    assert right[4, 8] == 0  # neighbour (4, 10) is off the image
    # With a binary mask the smoothing never crosses 1/2: weights are 1[m_i == m_j] in the box.
    mf = m.float()[0]
    same = torch.zeros(10, 10)
    same[:, :8] = (mf[:, :8] == mf[:, 2:]).float()
    assert torch.equal(right, same * b[0].float())


def test_affinity_weights_follow_the_smoothed_mask_for_a_soft_mask() -> None:
    """An isolated weak pixel (0.6) is pulled below 1/2 by its background neighbours."""
    m = torch.zeros(1, 9, 9)
    m[0, 4, 4] = 0.6
    b = torch.ones(1, 9, 9, dtype=torch.bool)
    w = pseudo_affinity_weights(m, b, 3, 2)
    # (4, 4) -> (4, 6): both background after smoothing (m' = 1/3, 0); unsmoothed the affinity
    # 0.6 * 0 + 0.4 * 1 = 0.4 would cut the edge.
    assert w[0, 4, 4, 4] == 1
    assert w[0, 4, 2, 2] == 1  # (2, 2) -> (2, 4) likewise


def test_affinity_loss_is_zero_on_agreement_and_grows_with_disagreement() -> None:
    m = box(12, 12, 3, 8, 3, 8)[None]
    b = box(12, 12, 1, 11, 1, 11)[None]
    s = torch.ones(1)
    assert noise_reduced_affinity_loss(logits_of(m[0])[None], m, b, s).item() == pytest.approx(0.0, abs=1e-6)
    noisy = m.clone()
    noisy[0, 4:6, 4:6] = False  # a hole the teacher's mask does not have
    assert noise_reduced_affinity_loss(logits_of(noisy[0])[None], m, b, s).item() > 1.0


def test_human_boxes_get_no_pseudo_mask_teacher_and_failed_boxes_do() -> None:
    target = torch.zeros(1, 16, 16, dtype=torch.long)
    correctable = torch.zeros(1, 16, 16, dtype=torch.bool)
    target[0, 1:5, 1:5] = 1  # human mask: certain, not correctable
    correctable[0, 8:12, 1:5] = True  # teacher mask box
    target[0, 8:12, 8:12] = 255  # failed teacher mask: ignored
    boxes = torch.stack([box(16, 16, 1, 5, 1, 5), box(16, 16, 8, 12, 1, 5), box(16, 16, 8, 12, 8, 12)])
    owner = torch.zeros(3, dtype=torch.long)
    keep = uncertain_boxes(boxes, owner, target, correctable, 255)
    assert keep.tolist() == [False, True, True]
    assert uncertain_boxes(boxes, owner, target, None, 255).all()


def _outputs(fg_logit: torch.Tensor) -> dict[str, torch.Tensor]:
    """A binary head saying ``fg_logit`` (the fine head is ignored when a binary head exists)."""
    binary = torch.stack([torch.zeros_like(fg_logit), fg_logit], dim=1)
    return {"fine": torch.zeros(fg_logit.shape[0], 2, *fg_logit.shape[-2:]), "binary": binary}


def test_mean_teacher_loss_on_a_batch() -> None:
    """32 x 32 logits at input size -> an 8 x 8 stride-4 grid; one teacher box and one human box."""
    h = w = 32
    truth = box(h, w, 8, 20, 8, 16)
    teacher = _outputs(logits_of(truth)[None])
    batch = {
        "target": torch.zeros(1, h, w, dtype=torch.long),
        "correctable": box(h, w, 4, 24, 4, 20)[None],
        "image": torch.zeros(1, 3, h, w),
        "boxes": [torch.tensor([[4.0, 4.0, 20.0, 24.0], [24.0, 24.0, 32.0, 32.0]])],  # 2nd: human
    }
    same, logs = mean_teacher_loss(teacher, teacher, batch, ramp=1.0)
    assert same.item() == pytest.approx(0.0, abs=1e-4)
    assert logs["mt_instances"] == 1.0
    assert logs["mt_confidence"] == pytest.approx(1.0, abs=1e-4)
    z = torch.zeros(1, h, w, requires_grad=True)  # an undecided student
    loss, logs = mean_teacher_loss(_outputs(z), teacher, batch, ramp=1.0)
    assert loss.item() > 0.1 and logs["loss_mt_pix"] > 0 and logs["loss_mt_aff"] > 0
    loss.backward()
    inside = z.grad[0, 8:20, 8:16]
    assert inside.abs().sum() > 0 and (inside <= 0).all()  # pushed towards the pseudo-mask
    half, _ = mean_teacher_loss(_outputs(z.detach()), teacher, batch, ramp=0.5)
    assert half.item() == pytest.approx(0.5 * loss.item(), rel=1e-5)
    human_only = dict(batch, boxes=[torch.tensor([[24.0, 24.0, 32.0, 32.0]])])
    nothing, logs = mean_teacher_loss(_outputs(z), teacher, human_only, ramp=1.0)
    assert nothing.item() == 0.0 and logs == {}
