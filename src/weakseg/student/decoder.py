"""Boxes2Pixels' hierarchical decoder, computed natively at stride 4.

Per-level 1x1 projections, top-down residual fusion, learned (pixel-shuffle) upsampling of the fused
deep map to stride 4, a small detail CNN on the raw image at stride 4, and a mixer (METHODS.md 1.3).
The reference upsamples the ViT branch 8x (to stride 1.75) and then shrinks it back to stride 4; here
it is upsampled only as far as stride 4 needs, which costs a fraction of the compute for the same
output grid. GroupNorm instead of BatchNorm: the decoder trains with small batches (and per-rank
batches under DDP), where batch statistics are noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups that divide ``channels``."""
    groups = math.gcd(8, channels)
    return nn.GroupNorm(groups, channels)


def conv_norm_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        norm(c_out),
        nn.ReLU(inplace=True),
    )


class ResidualFusion(nn.Module):
    """``x <- ReLU(f + Conv-Norm-ReLU-Conv-Norm(f))`` with ``f = x + skip``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            norm(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            norm(channels),
        )

    def forward(self, deep: Tensor, skip: Tensor) -> Tensor:
        if deep.shape[-2:] != skip.shape[-2:]:
            deep = F.interpolate(deep, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        fused = deep + skip
        return F.relu(fused + self.body(fused))


class ShuffleUp(nn.Module):
    """Learned 2x upsampling: conv to 4x channels, pixel shuffle, norm, ReLU.

    ``kernel=1`` (the default) makes it a learned 2x2 "transposed" upsampling: each deep position
    paints its own 2x2 block. The 3x3 version mixed neighbours too, which the fusion blocks before it
    and the mixer after it already do, and cost 9x the multiply-adds (about a seventh of a training step).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, 4 * c_out, kernel, padding=kernel // 2, bias=False)
        self.shuffle = nn.PixelShuffle(2)
        self.norm = norm(c_out)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.norm(self.shuffle(self.conv(x))))


class DetailBranch(nn.Module):
    """Two stride-2 convolutions on the raw image: edges and thin strokes at stride 4.

    The first one's stride-2 map (``stem_channels``) is kept for the stride-2 refiner.
    """

    stem_channels = 24

    def __init__(self, c_out: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_norm_relu(3, self.stem_channels, stride=2),
            conv_norm_relu(self.stem_channels, c_out, stride=2),
        )
        self.channels = c_out

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """``(stride-2 stem, stride-4 detail)`` maps."""
        stem = self.body[0](image)
        return stem, self.body[1](stem)


class HierarchicalDecoder(nn.Module):
    """Backbone feature maps (shallow to deep) plus the image -> a stride-4 feature map.

    Levels at stride 8 or coarser are projected to ``width`` and fused top-down; a level that is
    already at stride 4 (CNN backbones) joins at the mixer through a narrow projection instead of a
    full-width fusion block. Full-width 3x3 convolutions at stride 4 were two thirds of a training
    step on a CPU, and the stride-4 level's job, locating edges, needs few channels.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int],
        width: int = 128,
        out_channels: int = 64,
        use_detail: bool = True,
        detail_channels: int = 32,
        skip_channels: int = 32,
        upsample_kernel: int = 1,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(strides) or not strides:
            raise ValueError(f"need one stride per feature level, got {list(in_channels)} / {list(strides)}")
        deep = [i for i, s in enumerate(strides) if s >= 8] or list(range(len(strides)))
        self.deep_levels = deep
        self.skip_levels = [i for i in range(len(strides)) if i not in deep]
        self.project = nn.ModuleList(conv_norm_relu(in_channels[i], width, kernel=1) for i in deep)
        self.fuse = nn.ModuleList(ResidualFusion(width) for _ in deep[:-1])
        self.skip_project = nn.ModuleList(
            conv_norm_relu(in_channels[i], skip_channels, kernel=1) for i in self.skip_levels
        )
        # From the finest deep level's stride down to stride 4: halve the channels at each 2x step.
        in_stride = min(strides[i] for i in deep)
        steps = max(0, math.ceil(math.log2(in_stride / 4))) if in_stride > 4 else 0
        ups, channels = [], width
        for _ in range(steps):
            ups.append(ShuffleUp(channels, max(channels // 2, 32), upsample_kernel))
            channels = max(channels // 2, 32)
        self.upsample = nn.Sequential(*ups)
        self.detail = DetailBranch(detail_channels) if use_detail else None
        mixed_in = channels + skip_channels * len(self.skip_levels) + (detail_channels if use_detail else 0)
        self.mixer = conv_norm_relu(mixed_in, out_channels)
        self.out_channels = out_channels

    def forward(self, features: Sequence[Tensor], image: Tensor) -> tuple[Tensor, Tensor | None]:
        """The stride-4 map, and the detail branch's stride-2 stem (None without the branch)."""
        projected = [proj(features[i]) for proj, i in zip(self.project, self.deep_levels, strict=True)]
        x = projected[-1]
        for fuse, skip in zip(reversed(self.fuse), reversed(projected[:-1]), strict=True):
            x = fuse(x, skip)
        grid = (math.ceil(image.shape[-2] / 4), math.ceil(image.shape[-1] / 4))
        parts = [self.upsample(x)]
        parts += [proj(features[i]) for proj, i in zip(self.skip_project, self.skip_levels, strict=True)]
        stem = None
        if self.detail is not None:
            stem, detail = self.detail(image)
            parts.append(detail)
        parts = [
            p if p.shape[-2:] == grid else F.interpolate(p, size=grid, mode="bilinear", align_corners=False)
            for p in parts
        ]
        return self.mixer(torch.cat(parts, dim=1)), stem
