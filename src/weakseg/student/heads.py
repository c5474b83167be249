"""The two heads on the stride-4 map (binary localisation and fine classes) and the stride-2 refiner."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from weakseg.student.decoder import conv_norm_relu


class SegmentationHead(nn.Module):
    """Conv-Norm-ReLU then a 1x1 classifier, at stride 4 (upsampled to the input by the model)."""

    def __init__(self, c_in: int, num_outputs: int, hidden: int = 32) -> None:
        super().__init__()
        self.body = conv_norm_relu(c_in, hidden)
        self.classifier = nn.Conv2d(hidden, num_outputs, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.body(x))


class StrideTwoRefiner(nn.Module):
    """Residual logits at stride 2: ``up2(logits) + delta(features at stride 4 upsampled, image stem)``.

    Blowholes and cracks on Magnetic Tile are 4-8 px across: at stride 4 they are one or two logits
    wide and bilinear upsampling rounds them off. The refiner looks at the image at stride 2 (the
    detail branch's first convolution) and corrects the upsampled logits there. Its last layers start
    at zero, so a new refiner begins exactly as the stride-4 model and only learns a correction.
    """

    def __init__(self, c_features: int, c_stem: int, outputs: dict[str, int], hidden: int = 24) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_norm_relu(c_features + c_stem, hidden, kernel=1), conv_norm_relu(hidden, hidden)
        )
        self.delta = nn.ModuleDict({name: nn.Conv2d(hidden, n, 1) for name, n in outputs.items()})
        for conv in self.delta.values():
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, features: Tensor, stem: Tensor, logits: dict[str, Tensor]) -> dict[str, Tensor]:
        size = stem.shape[-2:]
        h = self.body[1](self._mix(features, stem))
        return {
            name: F.interpolate(value, size=size, mode="bilinear", align_corners=False) + self.delta[name](h)
            for name, value in logits.items()
        }

    def _mix(self, features: Tensor, stem: Tensor) -> Tensor:
        """``body[0]`` (1x1 conv, norm, ReLU) on ``[up2(features), stem]``, the conv split in two.

        A 1x1 convolution and bilinear upsampling are both linear and act on different axes, so they
        commute: the features' part of the convolution runs at stride 4 on 64 channels, and only its
        ``hidden`` outputs are upsampled. Concatenating the upsampled features with the stem at stride 2
        instead moved ~90 channels of full batches through memory, and its backward was the single
        costliest operation of a training step on a CPU (0.45 s of ~1.1 s at 320 px, batch 8).
        """
        conv, norm, relu = self.body[0]
        weight = conv.weight
        c_features = weight.shape[1] - stem.shape[1]
        deep = F.conv2d(features, weight[:, :c_features])
        deep = F.interpolate(deep, size=stem.shape[-2:], mode="bilinear", align_corners=False)
        return relu(norm(deep + F.conv2d(stem, weight[:, c_features:])))
