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

from torch import Tensor, nn

from weakseg.errors import WeaksegError
from weakseg.student.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE0_ARCH,
    FreezeMode,
    WeightsArg,
    load_lite0_weights,
)
from weakseg.student.segmenter import Segmenter, register_segmenter

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


class UnetBaseline(Segmenter):
    """``smp.Unet`` (frozen encoder) behind the student's interface."""

    def __init__(
        self, backbone: str, num_classes: int, weights: WeightsArg = "default", mode: str = "frozen"
    ) -> None:
        """``mode``: ``frozen`` (the baseline beside the student) or ``all`` (the encoder fine-tuned,
        what a user training a U-Net of their own would do; needs the feature cache off)."""
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
        if weights is not None:
            load_lite0_weights(self.unet.encoder.model, weights)  # the timm features_only model
        if mode not in ("frozen", "all"):
            raise WeaksegError(f"model=unet supports backbone_mode frozen or all (got {mode!r})")
        self.mode = mode
        for p in self.unet.encoder.parameters():
            p.requires_grad_(mode == "all")
        self._set_input_policy(IMAGENET_MEAN, IMAGENET_STD, 32)
        self.train()

    def train(self, mode: bool = True) -> UnetBaseline:
        """The encoder stays in eval mode: BatchNorm statistics never move (cache-safe; with small
        batches, also the usual way to fine-tune)."""
        super().train(mode)
        self.unet.encoder.eval()
        return self

    def encoder(self) -> nn.Module:
        return self.unet.encoder

    def describe(self) -> dict:
        return {"num_classes": self.num_classes, "model": "unet", "decoder_channels": list(DECODER_CHANNELS)}

    def features(self, image: Tensor) -> list[Tensor]:
        """Encoder maps at strides 2-32 (the input itself, smp's first "feature", is not cached)."""
        return list(self.unet.encoder(self.prepare(image)))[1:]

    def decode(self, features: list[Tensor], image: Tensor) -> dict[str, Tensor]:
        size = image.shape[-2:]
        x = self.unet.decoder([self.prepare(image), *features])
        logits = self.unet.segmentation_head(x)
        return {"fine": logits[..., : size[0], : size[1]]}


@register_segmenter(
    "unet", "segmentation_models_pytorch U-Net on the same frozen encoder (baseline; [bench] extra)"
)
def _build_unet(
    backbone: str,
    num_classes: int,
    *,
    weights: WeightsArg = "default",
    decoder: object = None,  # the student's decoder settings do not apply to smp's decoder
    backbone_mode: FreezeMode = "frozen",
) -> UnetBaseline:
    return UnetBaseline(backbone, num_classes, weights, backbone_mode)
