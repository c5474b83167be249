"""The CAM formulas on hand-checked tensors (METHODS.md 4.2-4.3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from weakseg.teachers.cam import (
    class_activation_map,
    fgbp_keep,
    fgbp_map,
    grad_cam,
    grad_cam_pp,
    layer_cam,
    normalise,
    region_aware,
    tanh_rescale,
)
from weakseg.teachers.three_state import map_quality, three_state

# Two channels on a 2 x 2 map.
A = torch.tensor([[[1.0, 2.0], [0.0, 1.0]], [[3.0, 0.0], [1.0, 1.0]]])


def test_cam_is_the_class_weighted_sum_of_the_channels_clipped_at_zero() -> None:
    weights = torch.tensor([[1.0, -1.0], [0.5, 0.5]])
    # class 0: A0 - A1 = [[-2, 2], [-1, 0]] -> ReLU
    assert torch.equal(class_activation_map(A, weights, 0), torch.tensor([[0.0, 2.0], [0.0, 0.0]]))
    # class 1: (A0 + A1) / 2 = [[2, 1], [0.5, 1]]
    assert torch.equal(class_activation_map(A, weights, 1), torch.tensor([[2.0, 1.0], [0.5, 1.0]]))


def test_grad_cam_weights_each_channel_by_its_mean_gradient() -> None:
    grad = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[-4.0, 0.0], [0.0, 0.0]]])
    # alpha = (1, -1): A0 - A1 = [[-2, 2], [-1, 0]] -> ReLU
    assert torch.equal(grad_cam(A, grad), torch.tensor([[0.0, 2.0], [0.0, 0.0]]))


def test_grad_cam_plus_plus_matches_its_formula_by_hand() -> None:
    a = torch.tensor([[[1.0, 3.0]]])  # one channel, 1 x 2; sum of A = 4
    g = torch.tensor([[[1.0, -1.0]]])
    # pixel 0: g=1:  a = 1 / (2 + 4 * 1) = 1/6, ReLU(g) = 1 -> 1/6
    # pixel 1: g=-1: a = 1 / (2 - 4) = -1/2, ReLU(g) = 0 -> 0
    # w = 1/6; M = ReLU(1/6 * A) = [1/6, 1/2]
    assert torch.allclose(grad_cam_pp(a, g), torch.tensor([[1 / 6, 0.5]]))


def test_grad_cam_plus_plus_treats_a_zero_denominator_as_zero_weight() -> None:
    a = torch.tensor([[[0.0, 0.0]]])
    g = torch.tensor([[[0.0, 0.0]]])
    assert torch.equal(grad_cam_pp(a, g), torch.zeros(1, 2))


def test_layer_cam_uses_each_locations_own_positive_gradient() -> None:
    grad = torch.tensor([[[1.0, -1.0], [2.0, 0.5]], [[-1.0, 1.0], [0.0, 2.0]]])
    # per pixel: ReLU(g0) A0 + ReLU(g1) A1
    # (0,0): 1*1 + 0*3 = 1; (0,1): 0*2 + 1*0 = 0; (1,0): 2*0 + 0*1 = 0; (1,1): .5*1 + 2*1 = 2.5
    assert torch.equal(layer_cam(A, grad), torch.tensor([[1.0, 0.0], [0.0, 2.5]]))


def test_tanh_rescaling_and_normalising() -> None:
    m = torch.tensor([[0.0, 1.0], [2.0, 4.0]])
    assert torch.allclose(tanh_rescale(m), torch.tanh(2 * m / 4))
    assert torch.equal(normalise(m), m / 4)
    assert torch.equal(normalise(torch.zeros(2, 2)), torch.zeros(2, 2))


def test_the_formulas_agree_on_a_gap_linear_classifier_through_autograd() -> None:
    """On GAP + linear, dy_c/dA_k = W[c, k] / (h w) everywhere: Grad-CAM is CAM / (h w), and
    LayerCAM is CAM with the negative weights dropped, divided by h w."""
    torch.manual_seed(0)
    activation = torch.rand(4, 3, 5, requires_grad=True)
    fc = torch.nn.Linear(4, 2)
    logit = fc(activation.mean(dim=(1, 2)))[1]
    (grad,) = torch.autograd.grad(logit, activation)
    hw = 15
    cam = class_activation_map(activation.detach(), fc.weight.detach(), 1)
    assert torch.allclose(grad_cam(activation.detach(), grad), cam / hw, atol=1e-6)
    positive = torch.nn.functional.relu(fc.weight.detach()[1])
    expected = torch.einsum("k,khw->hw", positive, activation.detach()) / hw
    assert torch.allclose(layer_cam(activation.detach(), grad), expected, atol=1e-6)


def _energy_grid() -> torch.Tensor:
    """A 1-channel 10 x 10 gradient whose magnitude at pixel i (row-major) is i."""
    return torch.arange(100, dtype=torch.float32).view(1, 10, 10) * torch.tensor(
        [1.0 if i % 2 == 0 else -1.0 for i in range(100)]
    ).view(1, 10, 10)


def test_fgbp_keeps_exactly_the_pixels_at_or_above_the_energy_percentile() -> None:
    grad = _energy_grid()
    keep = fgbp_keep(grad, 90.0)
    # quantile(0..99, 0.9) = 89.1: pixels 90..99 stay, the rest go
    expected = torch.zeros(100, dtype=torch.bool)
    expected[90:] = True
    assert torch.equal(keep.flatten(), expected)
    # the map is LayerCAM on the filtered gradient: zero outside the kept pixels
    activation = torch.ones(1, 10, 10)
    m = fgbp_map(activation, grad, 90.0).flatten()
    assert torch.equal(m[:90], torch.zeros(90))
    assert torch.equal(m[90:], torch.tensor([90.0, 0, 92, 0, 94, 0, 96, 0, 98, 0]))


def test_fgbp_at_percentile_zero_keeps_every_pixel_with_a_gradient() -> None:
    grad = _energy_grid()
    keep = fgbp_keep(grad, 0.0)
    assert not keep.flatten()[0] and keep.flatten()[1:].all()
    with pytest.raises(ValueError, match="percentile"):
        fgbp_keep(grad, 100.0)


def test_region_aware_weighting_multiplies_the_fine_maps_by_the_region() -> None:
    region = torch.tensor([[0.0, 1.0], [0.5, 1.0]])
    fine = [torch.tensor([[1.0, 1.0], [1.0, 0.0]]), torch.tensor([[2.0, 0.0], [2.0, 2.0]])]
    # mean of the normalised fine maps: [[1, .5], [1, .5]]; times region: [[0, .5], [.5, .5]]; / max
    assert torch.allclose(region_aware(region, fine, 1.0), torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    # power 0: no region weighting
    assert torch.allclose(region_aware(region, fine, 0.0), torch.tensor([[1.0, 0.5], [1.0, 0.5]]))


def test_three_states_and_quality() -> None:
    heat = np.array([[0.05, 0.2], [0.5, 0.9]])
    defect, ignore = three_state(heat, 0.4, 0.1)
    assert defect.tolist() == [[False, False], [True, True]]
    assert ignore.tolist() == [[False, True], [False, False]]
    # contrast (0.7 - 0.125) times the tag's probability
    assert map_quality(heat, defect, 0.5) == pytest.approx(0.5 * (0.7 - 0.125))
    assert map_quality(heat, np.zeros_like(defect), 1.0) == 0.0
    with pytest.raises(ValueError):
        three_state(heat, 0.1, 0.4)
