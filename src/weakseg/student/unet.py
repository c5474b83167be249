"""The baseline a user would otherwise pick: a segmentation_models_pytorch U-Net on the same encoder.

``smp.Unet`` with the student's timm encoder (``tu-<arch>``) and the same ImageNet weights, frozen like
the student's backbone, so the comparison isolates what comes after the encoder: smp's five-block U-Net
decoder (skips at strides 2-32 and the input) against the student's hierarchical decoder, detail branch,
binary head and self-correction. It keeps the student's interface (``features`` / ``decode`` /
``forward`` returning ``{"fine": logits}``), so training, the feature cache, prediction, evaluation
and ONNX export treat it like any student. Needs the ``[bench]`` extra.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weakseg.errors import WeaksegError
from weakseg.student.backbones import IMAGENET_MEAN, IMAGENET_STD, LITE0_ARCH, WeightsArg, lite0_state_dict

#: smp's default U-Net decoder widths, deepest block first.
DECODER_CHANNELS = (256, 128, 64, 32, 16)


def require_smp() -> types.ModuleType:
    """segmentation_models_pytorch, or an error that says which extra installs it."""
    try:
        import segmentation_models_pytorch as smp
    except ImportError as exc:
        raise WeaksegError(
            "the U-Net baseline needs segmentation-models-pytorch: pip install 'weakseg[bench]'"
        ) from exc
    return smp


class UnetBaseline(nn.Module):
    """``smp.Unet`` (frozen encoder) behind the student's interface."""

    def __init__(self, backbone: str, num_classes: int, weights: WeightsArg = "default") -> None:
        super().__init__()
        if backbone != "lite0":
            raise WeaksegError(f"model=unet supports backbone=lite0 only (got {backbone!r})")
        smp = require_smp()
        self.num_classes = num_classes
        self.unet = smp.Unet(
            encoder_name=f"tu-{LITE0_ARCH}",
            encoder_weights=None,
            decoder_channels=DECODER_CHANNELS,
            classes=num_classes + 1,
        )
        encoder = self.unet.encoder.model  # the timm features_only model
        if weights is not None:
            full = lite0_state_dict(weights)
            own = encoder.state_dict()
            missing = [k for k in own if k not in full or full[k].shape != own[k].shape]
            if missing:
                raise WeaksegError(f"U-Net encoder: ImageNet weights do not fit ({missing[:3]})")
            encoder.load_state_dict({k: full[k] for k in own})
        for p in self.unet.encoder.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.pad_multiple = 32
        self.train()

    def train(self, mode: bool = True) -> UnetBaseline:
        """The frozen encoder stays in eval mode: BatchNorm statistics never move (cache-safe)."""
        super().train(mode)
        self.unet.encoder.eval()
        return self

    def describe(self) -> dict:
        return {"num_classes": self.num_classes, "model": "unet", "decoder_channels": list(DECODER_CHANNELS)}

    def prepare(self, image: Tensor) -> Tensor:
        x = (image - self.mean) / self.std
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % self.pad_multiple, (-w) % self.pad_multiple
        if pad_h or pad_w:
            mode = "reflect" if min(h, w) > max(pad_h, pad_w) else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return x

    def features(self, image: Tensor) -> list[Tensor]:
        """Encoder maps at strides 2-32 (the input itself, smp's first "feature", is not cached)."""
        return list(self.unet.encoder(self.prepare(image)))[1:]

    def decode(self, features: list[Tensor], image: Tensor) -> dict[str, Tensor]:
        size = image.shape[-2:]
        x = self.unet.decoder([self.prepare(image), *features])
        logits = self.unet.segmentation_head(x)
        return {"fine": logits[..., : size[0], : size[1]]}

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        return self.decode(self.features(image), image)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]
