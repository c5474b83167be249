"""The stride-2 refiner: starts as plain upsampling, then learns a correction at stride 2."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from weakseg.errors import WeaksegError
from weakseg.student.heads import StrideTwoRefiner
from weakseg.student.model import DecoderConfig, StudentModel


class TinyBackbone(torch.nn.Module):
    """Maps at strides 4..32 from strided convolutions."""

    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    channels, strides, pad_multiple = [8, 12, 16, 24], [4, 8, 16, 32], 32

    def __init__(self) -> None:
        super().__init__()
        specs = ((3, 8, 4), (8, 12, 2), (12, 16, 2), (16, 24, 2))
        self.stages = torch.nn.ModuleList(torch.nn.Conv2d(i, o, 3, stride=s, padding=1) for i, o, s in specs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


def test_a_new_refiner_is_bilinear_upsampling() -> None:
    torch.manual_seed(0)
    refiner = StrideTwoRefiner(8, 4, {"fine": 3})
    feats, stem = torch.rand(1, 8, 5, 7), torch.rand(1, 4, 10, 14)
    logits = torch.rand(1, 3, 5, 7)
    out = refiner(feats, stem, {"fine": logits})["fine"]
    assert torch.equal(out, F.interpolate(logits, size=(10, 14), mode="bilinear", align_corners=False))


def test_the_split_projection_equals_projecting_the_upsampled_concatenation() -> None:
    """The refiner projects the stride-4 features before upsampling them (cheaper); a 1x1 convolution
    commutes with bilinear upsampling, so the result must be the published formulation's."""
    torch.manual_seed(0)
    refiner = StrideTwoRefiner(8, 4, {"fine": 3, "binary": 2})
    for p in refiner.parameters():
        torch.nn.init.normal_(p, std=0.5)
    feats, stem = torch.rand(2, 8, 5, 7), torch.rand(2, 4, 10, 14)
    logits = {"fine": torch.rand(2, 3, 5, 7), "binary": torch.rand(2, 2, 5, 7)}
    up = F.interpolate(feats, size=(10, 14), mode="bilinear", align_corners=False)
    hidden = refiner.body(torch.cat([up, stem], dim=1))
    out = refiner(feats, stem, logits)
    for name, value in logits.items():
        expected = F.interpolate(value, size=(10, 14), mode="bilinear", align_corners=False)
        expected = expected + refiner.delta[name](hidden)
        assert torch.allclose(out[name], expected, atol=1e-5), name
    assert not torch.allclose(out["fine"], F.interpolate(logits["fine"], size=(10, 14), mode="bilinear"))


def test_the_refined_model_learns_a_stripe_thinner_than_stride_four() -> None:
    torch.manual_seed(0)
    image = torch.zeros(1, 3, 32, 32)
    image[..., 15] = 1.0  # one bright column
    target = torch.zeros(1, 32, 32, dtype=torch.long)
    target[..., 15] = 1
    scores = {}
    for stride in (4, 2):
        torch.manual_seed(0)
        cfg = DecoderConfig(width=16, out_channels=16, output_stride=stride)
        model = StudentModel(TinyBackbone(), num_classes=1, config=cfg)
        for p in model.backbone.parameters():
            p.requires_grad_(False)
        opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
        for _ in range(150):
            loss = F.cross_entropy(model(image)["fine"], target, weight=torch.tensor([1.0, 20.0]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        pred = model(image)["fine"].argmax(1)
        inter = ((pred == 1) & (target == 1)).sum()
        scores[stride] = float(inter / ((pred == 1) | (target == 1)).sum())
    assert scores[2] > scores[4] + 0.1, scores


def test_stride_two_needs_the_detail_branch() -> None:
    with pytest.raises(WeaksegError, match="detail"):
        DecoderConfig(output_stride=2, use_detail=False)
    with pytest.raises(WeaksegError, match="2 or 4"):
        DecoderConfig(output_stride=8)
