"""BoxInst box terms per instance on a stride-4 grid (``StudentLoss._box_terms`` and its helpers).

Images are 64 x 64, so the box grid is 16 x 16 (4 px per cell); boxes sit on multiples of 4 so that
pooling is exact. Predictions are saturated binary-head logits (+-20 per class, +-40 foreground logit).
"""

from __future__ import annotations

import pytest
import torch

from weakseg.student.losses import LossConfig, StudentLoss, pairwise_affinity_loss, projection_loss
from weakseg.student.losses.box_supervision import (
    box_grid_size,
    box_projection_loss,
    rasterise_boxes,
    to_box_grid,
)

SIZE = 64


def _binary(fg: torch.Tensor, strength: float = 20.0) -> torch.Tensor:
    """``[H, W]`` 0/1 (or signed) foreground map -> binary-head logits ``[1, 2, H, W]``."""
    z = (fg.float() * 2 - 1) * strength if fg.min() >= 0 else fg.float()
    return torch.stack([-z, z])[None]


def _logs(binary: torch.Tensor, boxes: list[list[float]] | None, image=None, **cfg) -> dict[str, float]:
    config = LossConfig(tau=None, pairwise_warmup_steps=0, **({"projection_weight": 1.0} | cfg))
    batch = {
        "target": torch.zeros(1, SIZE, SIZE, dtype=torch.long),
        "image": image if image is not None else torch.full((1, 3, SIZE, SIZE), 0.5),
    }
    if boxes is not None:
        batch["boxes"] = [torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)]
    _, logs = StudentLoss(config)(
        {"binary": binary, "fine": torch.zeros(1, 3, *binary.shape[-2:])}, batch, 0, 0
    )
    return logs


def _fill(*regions: tuple[int, int, int, int], size: int = SIZE) -> torch.Tensor:
    """0/1 map with each ``(x0, y0, x1, y1)`` region set."""
    m = torch.zeros(size, size)
    for x0, y0, x1, y1 in regions:
        m[y0:y1, x0:x1] = 1
    return m


def _checker2(n: int) -> torch.Tensor:
    ii, jj = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    return ((ii // 2 + jj // 2) % 2).float()  # 2x2 blocks: dilation-2 axial neighbours differ


# ---------------------------------------------------------------- (1) the cross region between two boxes

BOX_A = (0, 0, 24, 24)  # top left
BOX_B = (40, 40, 64, 64)  # bottom right
CROSS = ((40, 0, 64, 24), (0, 40, 24, 64))  # rows of one box x columns of the other


def test_cross_region_between_two_boxes_is_penalised_per_instance() -> None:
    boxes = [list(BOX_A), list(BOX_B)]
    clean = _fill(BOX_A, BOX_B)
    crossed = _fill(BOX_A, BOX_B, *CROSS)
    new_clean = _logs(_binary(clean), boxes)["loss_proj"]
    new_crossed = _logs(_binary(crossed), boxes)["loss_proj"]
    assert new_clean == pytest.approx(0.0, abs=1e-4)
    # Per instance: box A's mask now reaches B's columns (x) and B's rows (y): Dice 1 - 2*6/(12+6) = 1/3
    # on each axis, the same for B; mean over the two instances = 2/3.
    assert new_crossed == pytest.approx(2 / 3, abs=1e-3)

    # The old term (projection of the whole map against the union of the boxes) cannot see it.
    grid = (16, 16)
    union = rasterise_boxes(torch.tensor(boxes, dtype=torch.float32), (SIZE, SIZE), grid).any(0, keepdim=True)
    old = [projection_loss(to_box_grid(m[None, None], grid)[:, 0], union).item() for m in (clean, crossed)]
    assert old[0] == pytest.approx(old[1], abs=1e-6)
    # ... and neither can the legacy union mask input, which keeps the old semantics.
    legacy = []
    for m in (clean, crossed):
        batch = {"target": torch.zeros(1, SIZE, SIZE, dtype=torch.long), "box_masks": (clean > 0)[None]}
        cfg = LossConfig(tau=None, projection_weight=1.0)
        legacy.append(
            StudentLoss(cfg)({"binary": _binary(m), "fine": torch.zeros(1, 3, SIZE, SIZE)}, batch, 0, 0)[1]
        )
    assert legacy[0]["loss_proj"] == pytest.approx(legacy[1]["loss_proj"], abs=1e-6)


def test_foreground_outside_every_box_is_penalised() -> None:
    boxes = [list(BOX_A), list(BOX_B)]
    blob = _fill(BOX_A, BOX_B, (28, 28, 36, 36))  # between the boxes, in no box's rows or columns
    assert _logs(_binary(blob), boxes)["loss_proj"] > 0.1
    assert (
        box_projection_loss(
            torch.zeros(1, 4, 4), torch.zeros(0, 4, 4, dtype=torch.bool), torch.zeros(0)
        ).item()
        == 0
    )


# ---------------------------------------------------------------- (2) projection on one box

BOX = (8, 12, 40, 52)  # grid columns 2..9 (8), rows 3..12 (10)


def test_projection_zero_for_a_filled_box_larger_for_half_a_box() -> None:
    exact = _logs(_binary(_fill(BOX)), [list(BOX)])["loss_proj"]
    half = _logs(_binary(_fill((8, 12, 24, 52))), [list(BOX)])["loss_proj"]
    assert exact == pytest.approx(0.0, abs=1e-4)
    # x-projection covers 4 of 8 columns: 1 - 2*4/(4+8) = 1/3; y-projection exact.
    assert half == pytest.approx(1 / 3, abs=1e-3)
    assert half > exact + 0.3


# ---------------------------------------------------------------- (3) pairwise inside a box


def test_pairwise_zero_for_constant_prediction_high_for_checkerboard() -> None:
    box = (16, 16, 48, 48)
    image = torch.zeros(1, 3, SIZE, SIZE)
    image[..., 16:48, 16:48] = 0.5  # uniform grey box on black: edges leaving the box are dropped
    kw = {"projection_weight": 0.0, "pairwise_weight": 1.0}
    constant = _logs(_binary(_fill(box), strength=10.0), [list(box)], image, **kw)["loss_pair"]
    checker = (_checker2(16).repeat_interleave(4, 0).repeat_interleave(4, 1) * 2 - 1) * 10.0
    high = _logs(_binary(checker), [list(box)], image, **kw)["loss_pair"]
    assert constant < 1e-3
    # Half of the 8 dilated neighbours lie in the other block: -log P_same ~= 20 on those, 0 on the rest.
    assert high > 5.0
    # No box in the image: no term (the map outside boxes is left alone).
    assert "loss_pair" not in _logs(_binary(checker), [], image, **kw)


# ---------------------------------------------------------------- (4) dilation on the stride-4 grid


def test_box_grid_is_stride_4_whatever_the_logits_stride() -> None:
    assert box_grid_size((64, 64), (64, 64)) == (16, 16)  # input-size logits: pooled 4x
    assert box_grid_size((64, 64), (32, 32)) == (16, 16)  # stride 2: pooled 2x
    assert box_grid_size((64, 64), (16, 16)) == (16, 16)  # stride 4: as given
    assert box_grid_size((64, 64), (8, 8)) == (8, 8)  # coarser: as given
    assert box_grid_size((62, 60), (62, 60)) == (16, 15)


def test_input_size_logits_and_stride_4_logits_give_the_same_box_terms() -> None:
    """Choice: logits finer than stride 4 are average-pooled to stride 4 (not computed on their own grid).

    Vertical stripes 2 cells wide at stride 4 (8 px at input size): on the stride-4 grid every
    neighbour 2 cells away in x (6 of 8) lies in the other stripe; at input size only a quarter of them.
    """
    stripes = (torch.arange(16) // 2 % 2).float().expand(16, 16)
    coarse = (stripes * 2 - 1) * 10.0
    fine = coarse.repeat_interleave(4, 0).repeat_interleave(4, 1)
    stride2 = coarse.repeat_interleave(2, 0).repeat_interleave(2, 1)
    box = [[8.0, 8.0, 56.0, 56.0]]
    kw = {"pairwise_weight": 1.0}
    at_4 = _logs(_binary(coarse), box, **kw)
    at_1 = _logs(_binary(fine), box, **kw)
    at_2 = _logs(_binary(stride2), box, **kw)
    for key in ("loss_pair", "loss_proj"):
        assert at_1[key] == pytest.approx(at_4[key], rel=1e-5), key
        assert at_2[key] == pytest.approx(at_4[key], rel=1e-5), key
    # The pairwise term on the input-size grid (what the box terms did before) is far smaller.
    box_full = torch.zeros(1, SIZE, SIZE)
    box_full[:, 8:56, 8:56] = 1
    at_input_grid = pairwise_affinity_loss(fine[None] * 2, torch.full((1, 3, SIZE, SIZE), 0.5), box_full)
    assert at_4["loss_pair"] > 10.0  # 6/8 of the edges at -log P_same ~= 19.3
    assert at_input_grid.item() < 0.3 * at_4["loss_pair"]  # measured 1/4 of it


# ---------------------------------------------------------------- helpers


def test_rasterise_boxes_samples_cell_centres_and_keeps_thin_boxes() -> None:
    boxes = torch.tensor(
        [
            [3.0, 0.0, 9.0, 4.0],  # x 3..9 holds only the centre 6 (cell 1); y 0..4 cell 0
            [9.0, 16.0, 10.0, 32.0],  # 1 px wide: the cell under its midpoint (cell 2)
            [5.0, 5.0, 5.0, 9.0],  # no width: empty
            [-10.0, 60.0, 100.0, 80.0],  # clipped to the image: every column, last row
        ]
    )
    m = rasterise_boxes(boxes, (SIZE, SIZE), (16, 16))
    assert m[0].nonzero().tolist() == [[0, 1]]
    assert m[1].any(0).nonzero()[:, 0].tolist() == [2] and m[1].any(1).nonzero()[:, 0].tolist() == [
        4,
        5,
        6,
        7,
    ]
    assert not m[2].any()
    assert m[3].any(0).all() and m[3].any(1).nonzero()[:, 0].tolist() == [15]


def test_box_terms_batch_with_empty_images_and_gradients() -> None:
    torch.manual_seed(0)
    binary = torch.randn(3, 2, SIZE, SIZE, requires_grad=True)
    fine = torch.randn(3, 3, SIZE, SIZE, requires_grad=True)
    batch = {
        "target": torch.zeros(3, SIZE, SIZE, dtype=torch.long),
        "image": 0.5 + 0.01 * torch.rand(3, 3, SIZE, SIZE),  # smooth: most edges pass the threshold
        "boxes": [torch.tensor([[0.0, 0.0, 20.0, 20.0], [30.0, 30.0, 50.0, 60.0]]), torch.zeros(0, 4), None],
    }
    cfg = LossConfig(projection_weight=1.0, pairwise_weight=1.0, pairwise_warmup_steps=0)
    total, logs = StudentLoss(cfg)({"binary": binary, "fine": fine}, batch, 0, 0)
    assert torch.isfinite(total) and logs["loss_proj"] > 0 and logs["loss_pair"] > 0
    total.backward()
    assert binary.grad[0].abs().sum() > 0 and torch.isfinite(binary.grad).all()
    # fine-head only (no binary head): the foreground is 1 - p(background)
    _, logs = StudentLoss(cfg)({"fine": fine.detach()}, batch, 0, 0)
    assert logs["loss_proj"] > 0
    with pytest.raises(ValueError, match="2 items for a batch of 3"):
        StudentLoss(cfg)({"binary": binary, "fine": fine}, batch | {"boxes": batch["boxes"][:2]}, 0, 0)
    with pytest.raises(ValueError, match=r"must be \[N, 4\]"):
        StudentLoss(cfg)({"binary": binary, "fine": fine}, batch | {"boxes": [torch.zeros(4)] * 3}, 0, 0)
