"""The student model on a tiny stand-in backbone: shapes, padding, the cached-feature path, ablations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
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


@pytest.mark.parametrize(("vit", "output_stride"), [(False, 4), (False, 2), (True, 4)])
def test_padding_goes_bottom_right_and_is_cropped_back_off(vit: bool, output_stride: int) -> None:
    """The logits of a 50x77 image are the top-left 50x77 of the logits of the same image reflect-padded
    (what the model does inside) to the backbone's multiple: no shift, nothing of the padding kept."""
    torch.manual_seed(0)
    config = DecoderConfig(width=16, out_channels=16, output_stride=output_stride)
    model = StudentModel(TinyBackbone(vit), num_classes=2, config=config).eval()
    image = torch.rand(1, 3, 50, 77)
    multiple = model.pad_multiple
    padded = F.pad(image, (0, (-77) % multiple, 0, (-50) % multiple), mode="reflect")
    assert padded.shape[-2:] != image.shape[-2:]
    with torch.no_grad():
        small, big = model(image), model(padded)
    for key in ("fine", "binary"):
        assert small[key].shape[-2:] == (50, 77)
        assert torch.allclose(small[key], big[key][..., :50, :77], atol=1e-6), key


def test_an_images_logits_do_not_depend_on_its_batch() -> None:
    """GroupNorm, not batch statistics: the cache computes features in batches of 8, training decodes
    other batches and prediction one image at a time, in training mode as in eval mode."""
    torch.manual_seed(0)
    model = StudentModel(TinyBackbone(), num_classes=2, config=DecoderConfig(width=16, out_channels=16))
    images = torch.rand(3, 3, 64, 64) * torch.tensor([0.2, 1.0, 5.0]).view(3, 1, 1, 1)  # unlike stats
    for mode in (True, False):
        model.train(mode)
        with torch.no_grad():
            together = model(images)["fine"]
            alone = torch.cat([model(images[i : i + 1])["fine"] for i in range(3)])
        assert torch.allclose(together, alone, atol=1e-5), mode


def test_ablations_remove_their_parts() -> None:
    no_detail = StudentModel(
        TinyBackbone(), 2, DecoderConfig(width=16, out_channels=16, use_detail=False, output_stride=4)
    )
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
    assert cnn.decoder.upsample[0].conv.kernel_size == (1, 1)  # today's default; older runs used 3x3
    old = StudentModel(TinyBackbone(), 2, DecoderConfig(width=32, out_channels=16, upsample_kernel=3))
    assert old.decoder.upsample[0].conv.kernel_size == (3, 3)
    x = torch.rand(1, 3, 64, 64)
    assert old(x)["fine"].shape == cnn(x)["fine"].shape == (1, 3, 64, 64)


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
