"""The folded encoder computes the same features as the model it was copied from."""

from __future__ import annotations

import torch
from timm.layers import BatchNormAct2d
from torch import Tensor, nn

from weakseg.student.fold import fast_features, fold_batchnorm
from weakseg.student.segmenter import Segmenter, create_segmenter


def _randomise_statistics(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine terms, so that a wrong fold shows."""
    g = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.5)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.3)
            bn.weight.data.copy_(torch.randn(bn.num_features, generator=g))
            bn.bias.data.copy_(torch.randn(bn.num_features, generator=g))


def test_a_convolution_and_its_batchnorm_become_one_convolution() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
    _randomise_statistics(net)
    net.eval()
    x = torch.rand(2, 3, 8, 8)
    expected = net(x)
    folded, count = fold_batchnorm(net)
    assert count == 1
    assert isinstance(folded[1], nn.Identity)
    assert folded[0].bias is not None
    torch.testing.assert_close(folded(x), expected, rtol=1e-5, atol=1e-5)


def test_timms_batchnorm_with_activation_keeps_its_activation() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 1), BatchNormAct2d(4, act_layer=nn.ReLU))
    _randomise_statistics(net)
    net.eval()
    x = torch.randn(2, 3, 5, 5)
    expected = net(x)
    assert (expected == 0).any(), "the activation must matter for this test"
    fold_batchnorm(net)
    assert any(isinstance(m, nn.ReLU) for m in net[1].modules())
    torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-5)


def test_every_batchnorm_of_the_lite0_encoder_is_folded_and_the_features_agree() -> None:
    model = create_segmenter("student", "lite0", 3, weights=None)
    _randomise_statistics(model.encoder())
    model.eval()
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.encoder().modules())
    copy_ = create_segmenter("student", "lite0", 3, weights=None)
    copy_.load_state_dict(model.state_dict())
    _, count = fold_batchnorm(copy_.eval().encoder())
    assert count == n_bn > 0
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        expected = model.features(x)
    got = fast_features(model)(x)
    assert [g.shape for g in got] == [e.shape for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert g.is_contiguous()
        torch.testing.assert_close(g, e, rtol=1e-3, atol=1e-3 * e.abs().max().item())


class _BatchNormFirst(Segmenter):
    """Declares conv then BatchNorm but applies them the other way round: folding would be wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.bn = nn.BatchNorm2d(3)
        self._set_input_policy((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 1)

    def encoder(self) -> nn.Module:
        return self

    def features(self, image: Tensor) -> list[Tensor]:
        return [self.conv(self.bn(image))]


def test_an_encoder_that_folding_would_change_keeps_its_own_features() -> None:
    model = _BatchNormFirst()
    _randomise_statistics(model)
    model.eval()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        expected = model.features(x)[0]
        assert not torch.allclose(fold_batchnorm(_copy(model))[0].features(x)[0], expected, atol=1e-3)
    torch.testing.assert_close(fast_features(model)(x)[0], expected)


def _copy(model: _BatchNormFirst) -> _BatchNormFirst:
    other = _BatchNormFirst()
    other.load_state_dict(model.state_dict())
    return other.eval()
