"""The tag classifier: multi-label "which defects does this image show", the root of the tags route.

A registry backbone (:func:`~weakseg.student.backbones.create_backbone`) with its deepest stage
trainable (``mode="last"``), and a head that keeps a stride-16 map for the class activation maps:

``A = ReLU(BN(conv1x1([f16, up2(f32)])))``  (``cam_channels`` maps at stride 16), then
``logits = W · GAP(A) + b``, one sigmoid per defect class.

Global *average* pooling followed by one linear layer is what makes plain CAM exact
(``M_c = Σ_k W[c, k] A_k``, :func:`weakseg.teachers.cam.class_activation_map`); fusing the stride-32
stage into a stride-16 map keeps small defects (Blowhole covers 0.2 % of a Magnetic Tile image) more
than one feature pixel wide. :meth:`TagClassifier.forward_maps` returns every map a CAM method needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weakseg.student.backbones import Backbone, FreezeMode, create_backbone


@dataclass(frozen=True)
class ClassifierConfig:
    backbone: str = "lite0"
    backbone_weights: str | None = "default"
    backbone_mode: str = "last"  # the deepest stage trains with the head; "frozen" / "all" also work
    cam_channels: int = 256


class TagClassifier(nn.Module):
    """Backbone features -> stride-16 activation map ``A`` -> GAP -> linear logits (one per class)."""

    def __init__(self, backbone: Backbone, num_classes: int, cam_channels: int = 256) -> None:
        super().__init__()
        if len(backbone.channels) < 2:
            raise ValueError("the tag classifier needs a backbone with at least two feature maps")
        self.backbone = backbone
        self.num_classes = int(num_classes)
        deep, deeper = backbone.channels[-2], backbone.channels[-1]
        self.fuse = nn.Sequential(
            nn.Conv2d(deep + deeper, cam_channels, 1, bias=False),
            nn.BatchNorm2d(cam_channels),
            nn.ReLU(inplace=False),
        )
        self.fc = nn.Linear(cam_channels, self.num_classes)
        self.register_buffer("mean", torch.tensor(backbone.mean, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(backbone.std, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.pad_multiple = backbone.pad_multiple

    def prepare(self, image: Tensor) -> Tensor:
        """``[0, 1]`` RGB -> normalised, zero-padded on the right/bottom to the backbone's multiple."""
        x = (image - self.mean) / self.std
        h, w = x.shape[-2:]
        return F.pad(x, (0, (-w) % self.pad_multiple, 0, (-h) % self.pad_multiple))

    def forward_maps(self, image: Tensor) -> dict[str, Any]:
        """``logits``, the CAM map ``A`` (``activation``) and the backbone's ``features`` (shallow first).

        Everything stays in the autograd graph, so a caller may take gradients of a logit with respect
        to any map (Grad-CAM, LayerCAM, FGBP) after marking the input as requiring grad.
        """
        features = self.backbone(self.prepare(image))
        deep, deeper = features[-2], features[-1]
        up = F.interpolate(deeper, size=deep.shape[-2:], mode="bilinear", align_corners=False)
        activation = self.fuse(torch.cat([deep, up], dim=1))
        logits = self.fc(activation.mean(dim=(2, 3)))
        return {"logits": logits, "activation": activation, "features": features}

    def forward(self, image: Tensor) -> Tensor:
        return self.forward_maps(image)["logits"]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


def create_classifier(
    num_classes: int, config: ClassifierConfig | None = None, *, weights: Any = "use-config"
) -> TagClassifier:
    """Build a tag classifier; ``weights`` overrides the config's backbone weights (``None``: random)."""
    config = config or ClassifierConfig()
    chosen = config.backbone_weights if weights == "use-config" else weights
    mode: FreezeMode = config.backbone_mode  # type: ignore[assignment]
    backbone = create_backbone(config.backbone, weights=chosen, mode=mode)
    return TagClassifier(backbone, num_classes, config.cam_channels)


def class_names_to_targets(tags: Sequence[int], num_classes: int) -> Tensor:
    """Class ids ``1..K`` -> a multi-hot ``[K]`` float target (an empty tuple: a defect-free image)."""
    target = torch.zeros(num_classes)
    for class_id in tags:
        target[int(class_id) - 1] = 1.0
    return target
