"""Student losses on tiny hand-checked tensors (expected numbers worked out in the comments)."""

from __future__ import annotations

import math

import pytest
import skimage.color
import torch
import torch.nn.functional as F

from weakseg.student.losses import (
    LossConfig,
    StudentLoss,
    asymmetric_dice,
    boundary_preserving_map,
    bpm_weighted_bce,
    image_similarity,
    pairwise_affinity_loss,
    projection_loss,
    rgb_to_lab,
    self_correct,
    warmup_factor,
    weighted_ce,
)

# ---------------------------------------------------------------- self-correction


def test_self_correct_relabels_only_confident_background():
    # 6 pixels in a row, 3 classes. "strong k" logits put ~0.9999 on class k (e^10 / (e^10 + 2)).
    strong = {0: [10.0, 0.0, 0.0], 1: [0.0, 10.0, 0.0], 2: [0.0, 0.0, 10.0]}
    weak1 = [0.0, 0.5, -10.0]  # argmax 1 but p1 = e^.5 / (1 + e^.5 + e^-10) ~= 0.62 < tau
    columns = [strong[1], strong[2], weak1, strong[0], strong[1], strong[1]]
    target = torch.tensor([[[0, 0, 0, 0, 2, 255]]])
    # px0: bg, confident 1      -> 1        px1: bg, confident 2 -> 2
    # px2: bg, below tau        -> 0        px3: bg, argmax 0    -> 0
    # px4: defect 2, predicts 1 -> stays 2 (never swapped)   px5: ignore -> stays 255
    logits = torch.tensor(columns).T.reshape(1, 3, 1, 6).requires_grad_(True)
    before = target.clone()
    corrected, relabel = self_correct(logits, target, tau=0.9)
    assert corrected.tolist() == [[[1, 2, 0, 0, 2, 255]]]
    assert relabel.tolist() == [[[True, True, False, False, False, False]]]
    assert torch.equal(target, before)  # input untouched
    assert not corrected.requires_grad and corrected.dtype == target.dtype


def test_self_correct_never_relaxes_defects():
    # A confident background prediction on defect pixels changes nothing (one-sided).
    logits = torch.tensor([10.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    target = torch.tensor([[[1, 2], [1, 2]]])
    corrected, relabel = self_correct(logits, target, tau=0.5)
    assert torch.equal(corrected, target) and not relabel.any()


# ---------------------------------------------------------------- weighted CE


def test_weighted_ce_is_unweighted_mean_of_weighted_pixels():
    # px0: logits [0, 0], y=0 -> CE = ln 2 = 0.693147
    # px1: logits [0, ln 3], y=1 -> p1 = 3/4, CE = ln(4/3) = 0.287682
    # px2: ignored (255)
    # ours: (0.4 * 0.693147 + 4.0 * 0.287682) / 2 valid = (0.277259 + 1.150728) / 2 = 0.713994
    # torch's weighted mean divides by sum of weights 4.4 instead: 1.427987 / 4.4 = 0.324543
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)], [5.0, -5.0]]).T.reshape(1, 2, 1, 3)
    target = torch.tensor([[[0, 1, 255]]])
    w = torch.tensor([0.4, 4.0])
    ours = weighted_ce(logits, target, w)
    assert ours.item() == pytest.approx(0.713994, abs=1e-5)
    torch_mean = F.cross_entropy(logits, target, weight=w, ignore_index=255)
    assert torch_mean.item() == pytest.approx(0.324543, abs=1e-5)
    assert abs(ours.item() - torch_mean.item()) > 0.3
    # Manual per-pixel computation matches.
    manual = (0.4 * math.log(2) + 4.0 * math.log(4 / 3)) / 2
    assert ours.item() == pytest.approx(manual, abs=1e-6)
    # Pixel weights multiply per pixel: (0.277259 * 1 + 1.150728 * 0.5) / 2 = 0.426311
    pw = torch.tensor([[[1.0, 0.5, 7.0]]])
    assert weighted_ce(logits, target, w, pixel_weights=pw).item() == pytest.approx(0.426311, abs=1e-5)


def test_weighted_ce_all_ignored_is_zero_with_graph():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = weighted_ce(logits, torch.full((1, 2, 2), 255), None)
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and not logits.grad.any()


# ---------------------------------------------------------------- asymmetric Dice


def test_asymmetric_dice_hand_example_and_fp_cheaper_than_fn():
    target = torch.tensor([[[1, 1, 1, 1, 0, 0, 0, 0]]]).float()
    # 2 FP only: I = 4, FP = 2, FN = 0 -> 1 - 4 / (4 + 0.4 * 2) = 1 - 4 / 4.8 = 0.166667
    fp_only = torch.tensor([[[1, 1, 1, 1, 1, 1, 0, 0]]]).float()
    # 2 FN only: I = 2, FP = 0, FN = 2 -> 1 - 2 / (2 + 2) = 0.5
    fn_only = torch.tensor([[[1, 1, 0, 0, 0, 0, 0, 0]]]).float()
    loss_fp = asymmetric_dice(fp_only, target, beta=0.4)
    loss_fn = asymmetric_dice(fn_only, target, beta=0.4)
    assert loss_fp.item() == pytest.approx(1 / 6, abs=1e-5)
    assert loss_fn.item() == pytest.approx(0.5, abs=1e-5)
    assert loss_fp < loss_fn
    assert asymmetric_dice(target, target).item() == pytest.approx(0.0, abs=1e-6)


def test_asymmetric_dice_sums_over_batch_and_respects_valid():
    target = torch.tensor([[[1, 1, 1, 1, 0, 0, 0, 0]]]).float()
    pred = torch.tensor([[[1, 1, 1, 1, 1, 1, 0, 0]]]).float()
    # An extra image with empty target and empty prediction adds nothing to the batch sums.
    both_t = torch.cat([target, torch.zeros_like(target)])
    both_p = torch.cat([pred, torch.zeros_like(pred)])
    assert asymmetric_dice(both_p, both_t).item() == pytest.approx(1 / 6, abs=1e-5)
    # FP pixels outside ``valid`` do not count: I = 4, FP = 0 -> 0.
    valid = torch.tensor([[[1, 1, 1, 1, 0, 0, 1, 1]]]).bool()
    assert asymmetric_dice(pred, target, valid=valid).item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- projection


def _box(h=8, w=8, r0=2, r1=6, c0=1, c1=7):
    m = torch.zeros(1, h, w)
    m[:, r0:r1, c0:c1] = 1
    return m


def test_projection_loss_zero_for_filled_box_positive_for_missing_row():
    box = _box()  # rows 2..5 (4 rows), cols 1..6 (6 columns)
    assert projection_loss(box.clone(), box).item() == pytest.approx(0.0, abs=1e-5)
    # A "plus" touching every row and column of the box (and nothing else) also scores 0.
    plus = torch.zeros_like(box)
    plus[:, 3, 1:7] = 1
    plus[:, 2:6, 3] = 1
    assert projection_loss(plus, box).item() == pytest.approx(0.0, abs=1e-5)
    # Missing row 2: y-projection 3 of 4 rows -> 1 - 2*3/(3+4) = 1/7 = 0.142857; x-projection exact.
    missing = box.clone()
    missing[:, 2] = 0
    assert projection_loss(missing, box).item() == pytest.approx(1 / 7, abs=1e-5)


# ---------------------------------------------------------------- pairwise affinity


def _checker2(h, w):
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((ii // 2 + jj // 2) % 2).float()  # 2x2 blocks: dilation-2 axial neighbours differ


def test_pairwise_low_for_constant_high_for_checkerboard():
    image = torch.full((1, 3, 9, 9), 0.5)
    box = torch.ones(1, 9, 9)
    constant = torch.full((1, 9, 9), 5.0)
    # Every kept edge: P = s^2 + (1-s)^2 with s = sigmoid(5) = 0.993307 -> -log P = 0.013386
    low = pairwise_affinity_loss(constant, image, box)
    assert low.item() == pytest.approx(-math.log(0.993307**2 + 0.006693**2), abs=1e-4)
    checker = (_checker2(9, 9) * 10 - 5).unsqueeze(0)
    high = pairwise_affinity_loss(checker, image, box)
    assert high.item() > 1.0 > 50 * low.item()


def test_pairwise_ignores_edges_across_colour_boundary_and_outside_box():
    # Left half black, right half white; prediction follows the edge exactly.
    image = torch.zeros(1, 1, 8, 8)
    image[..., 4:] = 1.0
    logits = torch.full((1, 8, 8), -8.0)
    logits[..., 4:] = 8.0
    box = torch.ones(1, 8, 8)
    assert pairwise_affinity_loss(logits, image, box).item() < 1e-3
    # Without boxes no edge counts: loss 0.
    assert pairwise_affinity_loss(logits, image, torch.zeros(1, 8, 8)).item() == 0.0
    # Saturated logits (+-100) stay exact in log space. On a black image every edge is kept: 192 axial
    # edges join opposite labels (-log P = -log(2 sig(100) sig(-100)) = 100 - ln 2) and 144 diagonal
    # ones equal labels (-log P ~ 0), so the mean is 192 * (100 - ln 2) / 336 = 56.746773.
    extreme = pairwise_affinity_loss((_checker2(8, 8) * 200 - 100).unsqueeze(0), image * 0, box)
    assert extreme.item() == pytest.approx(192 * (100 - math.log(2)) / 336, rel=1e-5)


def test_image_similarity_uniform_and_padding():
    sim = image_similarity(torch.full((1, 3, 5, 5), 0.3), size=3, dilation=2)
    assert sim.shape == (1, 8, 5, 5)
    # Centre pixel (2, 2) has all 8 neighbours inside; corner (0, 0) only 3 (right, below, diagonal).
    assert torch.allclose(sim[0, :, 2, 2], torch.ones(8))
    assert int((sim[0, :, 0, 0] > 0.5).sum()) == 3


def test_rgb_to_lab_matches_skimage():
    rgb = torch.rand(1, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    ours = rgb_to_lab(rgb)[0].permute(1, 2, 0).numpy()
    ref = skimage.color.rgb2lab(rgb[0].permute(1, 2, 0).numpy())
    assert abs(ours - ref).max() < 1e-2


def test_warmup_factor():
    assert warmup_factor(0, 1000) == 0.0
    assert warmup_factor(250, 1000) == 0.25
    assert warmup_factor(5000, 1000) == 1.0
    assert warmup_factor(3, 0) == 1.0


# ---------------------------------------------------------------- BPM


def test_bpm_peaks_beside_the_boundary_not_on_it():
    # A 32x32 map with a soft square: p = sig(x-8) sig(24-x) sig(y-8) sig(24-y). Along row y = 16 the
    # left edge is at x = 8 (p ~= 0.5). 1-D second differences of sigmoid: t=0: 0 (inflection),
    # t=+-1: -+0.081, t=+-2: -+0.078, t=+-4: -+0.016 -> |Laplacian| ~ 3 * those.
    ax = torch.arange(32).float()
    sx = torch.sigmoid(ax - 8) * torch.sigmoid(24 - ax)
    prob = (sx.view(1, 32) * sx.view(32, 1)).unsqueeze(0)
    w = boundary_preserving_map(prob, max_weight=float("inf"))
    assert w.mean().item() == pytest.approx(3.0, rel=1e-4)
    profile = w[0, 16, :16]
    assert prob[0, 16, 8].item() == pytest.approx(0.5, abs=1e-3)
    assert profile[8] < 0.1 * profile[7] and profile[8] < 0.1 * profile[9]  # ~0 on the boundary
    assert int(profile.argmax()) in (6, 7, 9, 10)  # the peak is beside it
    assert profile[15] < 0.1 * profile.max()  # flat interior ~0


def test_bpm_binary_map_marks_both_sides_and_flat_falls_back():
    target = torch.zeros(1, 12, 12)
    target[:, 3:9, 3:9] = 1
    w = boundary_preserving_map(target, max_weight=float("inf"))
    row = w[0, 6]
    # Inside edge pixel x=3: 8 - 5 = 3; outside x=2: |0 - 3| = 3; deep inside/outside 0.
    assert row[2] > 0 and row[3] > 0 and row[2] == pytest.approx(row[3].item())
    assert row[0] == 0 and row[6] == 0
    assert torch.equal(boundary_preserving_map(torch.full((1, 4, 4), 0.3) * 0), torch.ones(1, 4, 4))


def test_bpm_bce_reweights_per_pixel():
    torch.manual_seed(0)
    logits = torch.randn(2, 10, 10, requires_grad=True)
    target = (torch.rand(2, 10, 10) > 0.5).float()
    loss = bpm_weighted_bce(logits, target)
    buggy = 3 * F.binary_cross_entropy_with_logits(logits, target)  # the released code's effective loss
    assert abs(loss.item() - buggy.item()) > 1e-3
    w = boundary_preserving_map(torch.sigmoid(logits.detach()))
    manual = (w * F.binary_cross_entropy_with_logits(logits, target, reduction="none")).mean()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


# ---------------------------------------------------------------- StudentLoss


def _batch(b=2, c=3, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c, (b, h, w), generator=g)
    target[:, 0, :] = 255
    box = torch.zeros(b, h, w, dtype=torch.bool)
    box[0, 2:10, 3:12] = True  # image 1 has no boxes
    return {
        "target": target,
        "image": torch.rand(b, 3, h, w, generator=g),
        "box_masks": [box[0:1], None],
        "pixel_weights": torch.rand(b, h, w, generator=g),
    }


def test_student_loss_hand_example():
    # One image of 1 x 4 pixels: target [bg, defect, defect, ignored], quality weights [1, .5, 2, 7].
    # Fine logits [bg, defect]: [0, 0], [0, ln 3], [ln 3, 0], [5, -5] -> CE ln 2, ln(4/3), ln 4, ignored.
    #   loss_fine = (0.4*1*ln 2 + 4*.5*ln(4/3) + 4*2*ln 4) / 3 valid
    #             = (0.277259 + 0.575364 + 11.090355) / 3 = 3.980993
    # Binary foreground logits [ln 4, ln 3, -ln 3, 0] -> p = [0.8, 0.75, 0.25, ignored]:
    #   I = 0.75 + 0.25 = 1, FP = 1.8 - 1 = 0.8, FN = 2 - 1 = 1
    #   loss_bin = 1 - 1 / (1 + 0.4*0.8 + 1) = 1 - 1 / 2.32 = 0.568966
    # total = 0.5 * 3.980993 + 0.5 * 0.568966 = 2.274979
    ln3, ln4 = math.log(3.0), math.log(4.0)
    fine = torch.tensor([[0.0, 0.0], [0.0, ln3], [ln3, 0.0], [5.0, -5.0]]).T.reshape(1, 2, 1, 4)
    fg = torch.tensor([ln4, ln3, -ln3, 0.0])
    binary = torch.stack([torch.zeros(4), fg]).reshape(1, 2, 1, 4)
    fine.requires_grad_(True)
    binary.requires_grad_(True)
    batch = {
        "target": torch.tensor([[[0, 1, 1, 255]]]),
        "pixel_weights": torch.tensor([[[1.0, 0.5, 2.0, 7.0]]]),
    }
    # The paper's loss: without weakseg's per-class Dice (on by default), checked on its own elsewhere.
    loss_fn = StudentLoss(LossConfig(use_quality=True, tau=None, fine_dice_weight=0.0))
    total, logs = loss_fn({"binary": binary, "fine": fine}, batch, epoch=10, step=500)
    assert logs["loss_fine"] == pytest.approx(3.980993, abs=1e-5)
    assert logs["loss_bin"] == pytest.approx(0.568966, abs=1e-5)
    assert total.item() == pytest.approx(2.274979, abs=1e-5) and logs["loss"] == total.item()
    total.backward()
    # Pixel 0: d/dz of 0.5 * 0.4 * 1 * CE / 3 = 0.5 * 0.4 / 3 * (softmax - onehot) = (1/15) * [-0.5, 0.5]
    assert fine.grad[0, :, 0, 0].tolist() == pytest.approx([-1 / 30, 1 / 30], abs=1e-6)
    # The ignored pixel gets no gradient from either head.
    assert not fine.grad[..., 3].any() and not binary.grad[..., 3].any()


def test_student_loss_adds_the_box_terms_with_their_weights_and_ramp():
    pixel_only = StudentLoss(LossConfig(use_quality=True, use_bpm=True))
    cfg = LossConfig(
        projection_weight=2.0, pairwise_weight=3.0, pairwise_warmup_steps=1000, use_quality=True, use_bpm=True
    )
    binary = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(1))  # stride 2
    fine = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    outputs = {"binary": binary, "fine": fine}
    batch = _batch()
    batch["image"] = torch.full_like(batch["image"], 0.5)  # flat colour: the pairwise edges are kept
    base, _ = pixel_only(outputs, batch, epoch=10, step=500)
    total, logs = StudentLoss(cfg)(outputs, batch, epoch=10, step=500)
    assert logs["pairwise_ramp"] == 0.5  # step 500 of a 1000-step warm-up
    assert logs["loss_proj"] > 0 and logs["loss_pair"] > 0
    expected = base.item() + 2.0 * logs["loss_proj"] + 3.0 * 0.5 * logs["loss_pair"]
    assert total.item() == pytest.approx(expected, rel=1e-6)


def test_student_loss_default_class_weights_and_no_binary_head():
    loss_fn = StudentLoss(LossConfig(fine_dice_weight=0.0))
    assert loss_fn.class_weights(3, torch.device("cpu"), torch.float32).tolist() == pytest.approx(
        [0.4, 4.0, 4.0]
    )
    fine = torch.randn(2, 3, 16, 16, requires_grad=True)
    total, logs = loss_fn({"fine": fine}, {"target": _batch()["target"]}, epoch=0, step=0)
    assert "loss_bin" not in logs and total.item() == pytest.approx(0.5 * logs["loss_fine"], rel=1e-6)
    total.backward()


def test_student_loss_warmup_disables_self_correction():
    # Fine head confidently predicts class 1 everywhere; target is all background (one ignored row).
    fine = torch.zeros(1, 3, 4, 4)
    fine[:, 1] = 10.0
    binary = torch.zeros(1, 2, 4, 4)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0] = 255
    loss_fn = StudentLoss(LossConfig(self_correction_warmup_epochs=5))
    outputs = {"binary": binary, "fine": fine}
    _, before = loss_fn(outputs, {"target": target}, epoch=4, step=0)
    _, after = loss_fn(outputs, {"target": target}, epoch=5, step=0)
    assert before["n_relabelled"] == 0
    assert after["n_relabelled"] == 12  # 16 pixels minus the 4 ignored
    # The binary head sees the uncorrected labels either way.
    assert before["loss_bin"] == after["loss_bin"]
    assert after["loss_fine"] < before["loss_fine"]
    _, off = StudentLoss(LossConfig(tau=None, self_correction_warmup_epochs=0))(
        outputs, {"target": target}, epoch=50, step=0
    )
    assert off["n_relabelled"] == 0


def test_student_loss_quality_needs_pixel_weights():
    loss_fn = StudentLoss(LossConfig(use_quality=True))
    with pytest.raises(ValueError, match="pixel_weights"):
        loss_fn({"fine": torch.randn(1, 3, 4, 4)}, {"target": torch.zeros(1, 4, 4, dtype=torch.long)}, 0, 0)


def test_class_dice_hand_example_counts_each_present_class_as_a_whole():
    # 1 x 4 pixels, classes bg / 1 / 2; target [1, 2, 0, ignored]. Softmax of equal logits: 1/3 each.
    #   class 1: p = 1/3 on the 3 valid pixels -> I = 1/3, sum p + sum onehot = 1 + 1 = 2
    #            dice loss = 1 - (2/3 + eps) / (2 + eps), eps = 1 -> 1 - (5/3) / 3 = 4/9
    #   class 2: the same -> 4/9; the mean over the two present classes is 4/9.
    # With class 2 absent (target [1, 0, 0, ignored]) only class 1 counts: still 4/9, not diluted by
    # an absent class's empty overlap.
    from weakseg.student.losses.noise_robust import class_dice

    logits = torch.zeros(1, 3, 1, 4)
    assert float(class_dice(logits, torch.tensor([[[1, 2, 0, 255]]]))) == pytest.approx(4 / 9)
    assert float(class_dice(logits, torch.tensor([[[1, 0, 0, 255]]]))) == pytest.approx(4 / 9)
    # A class the logits get right has (almost) no loss, one they miss has almost all of it.
    right = torch.full((1, 3, 1, 4), -20.0)
    right[0, 1, 0, 0] = right[0, 2, 0, 1] = right[0, 0, 0, 2] = right[0, 0, 0, 3] = 20.0
    assert float(class_dice(right, torch.tensor([[[1, 2, 0, 255]]]), eps=1e-6)) < 1e-6
    wrong = right[:, [0, 2, 1]]  # classes 1 and 2 swapped
    assert float(class_dice(wrong, torch.tensor([[[1, 2, 0, 255]]]), eps=1e-6)) > 0.99
    # No defect in the batch: zero, and still part of the graph.
    logits.requires_grad_(True)
    none = class_dice(logits, torch.tensor([[[0, 0, 0, 255]]]))
    none.backward()
    assert float(none) == 0.0 and logits.grad is not None


def test_student_loss_adds_the_class_dice_by_default():
    fine = torch.zeros(1, 3, 1, 4, requires_grad=True)
    target = torch.tensor([[[1, 2, 0, 255]]])
    with_dice, logs = StudentLoss()({"fine": fine}, {"target": target}, epoch=0, step=0)
    without, _ = StudentLoss(LossConfig(fine_dice_weight=0.0))(
        {"fine": fine}, {"target": target}, epoch=0, step=0
    )
    assert logs["loss_dice"] == pytest.approx(4 / 9)
    assert float(with_dice - without) == pytest.approx(4 / 9)
