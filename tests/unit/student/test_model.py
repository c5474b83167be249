"""The student model on a tiny stand-in backbone: shapes, padding, the cached-feature path, ablations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from weakseg.student.model import DecoderConfig, StudentModel


class TinyBackbone(nn.Module):
    """Four maps at strides 4..32, or three ViT-like maps at stride 14."""

    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def __init__(self, vit: bool = False) -> None:
        super().__init__()
        self.vit = vit
        if vit:
            self.patch = nn.Conv2d(3, 16, 14, stride=14)
            self.channels, self.strides, self.pad_multiple = [16, 16, 16], [14, 14, 14], 14
        else:
            self.stages = nn.ModuleList(
                nn.Conv2d(c_in, c_out, 3, stride=s, padding=1)
                for c_in, c_out, s in ((3, 8, 4), (8, 12, 2), (12, 16, 2), (16, 24, 2))
            )
            self.channels, self.strides, self.pad_multiple = [8, 12, 16, 24], [4, 8, 16, 32], 32

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.vit:
            p = self.patch(x)
            return [p, p * 2, p * 3]
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


@pytest.mark.parametrize("vit", [False, True])
@pytest.mark.parametrize("size", [(64, 96), (50, 77)])
def test_logits_at_input_size(vit: bool, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = StudentModel(TinyBackbone(vit), num_classes=3, config=DecoderConfig(width=16, out_channels=16))
    out = model(torch.rand(2, 3, *size))
    assert out["fine"].shape == (2, 4, *size)
    assert out["binary"].shape == (2, 2, *size)


def test_decode_from_cached_features_equals_forward() -> None:
    torch.manual_seed(0)
    model = StudentModel(
        TinyBackbone(), num_classes=2, config=DecoderConfig(width=16, out_channels=16)
    ).eval()
    image = torch.rand(1, 3, 70, 90)
    with torch.no_grad():
        direct = model(image)
        cached = [f.clone() for f in model.features(image)]
        again = model.decode(cached, image)
    assert torch.equal(direct["fine"], again["fine"])


def test_ablations_remove_their_parts() -> None:
    no_detail = StudentModel(TinyBackbone(), 2, DecoderConfig(width=16, out_channels=16, use_detail=False))
    no_binary = StudentModel(TinyBackbone(), 2, DecoderConfig(width=16, out_channels=16, use_binary=False))
    assert no_detail.decoder.detail is None
    assert "binary" not in no_binary(torch.rand(1, 3, 64, 64))
    full = StudentModel(TinyBackbone(), 2, DecoderConfig(width=16, out_channels=16))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(no_detail) < count(full) and count(no_binary) < count(full)


def test_vit_branch_is_upsampled_only_to_stride_4() -> None:
    model = StudentModel(TinyBackbone(vit=True), 2, DecoderConfig(width=32, out_channels=16))
    # stride 14 -> 7 -> 3.5: two pixel-shuffle steps, then a resize to the stride-4 grid; never to 1.75
    assert len(model.decoder.upsample) == 2
    # CNN strides 4-32: levels 8-32 fuse at full width, one learned 2x step to stride 4, and the
    # stride-4 level joins at the mixer through a narrow projection.
    cnn = StudentModel(TinyBackbone(), 2, DecoderConfig(width=32, out_channels=16))
    assert len(cnn.decoder.upsample) == 1
    assert cnn.decoder.skip_levels == [0]


def test_student_on_the_real_lite0_backbone_trains_only_the_decoder() -> None:
    from weakseg.student.backbones import create_backbone

    torch.manual_seed(0)
    model = StudentModel(
        create_backbone("lite0"), num_classes=2, config=DecoderConfig(width=32, out_channels=32)
    )
    model.train()
    out = model(torch.rand(1, 3, 100, 130))
    assert out["fine"].shape == (1, 3, 100, 130)
    (out["fine"].mean() + out["binary"].mean()).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.decoder.parameters() if p.requires_grad)
