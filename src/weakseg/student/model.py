"""The student: frozen backbone -> hierarchical decoder -> binary and fine heads.

Input is an RGB float tensor in ``[0, 1]`` of any size; normalisation and padding to the backbone's
multiple happen inside the model, so training, evaluation, prediction and the exported graph share one
pre-processing path. Outputs are logits at the input resolution.

The backbone is frozen, so its features can be computed once and cached; :meth:`StudentModel.decode`
runs everything after the backbone from such cached features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weakseg.errors import WeaksegError
from weakseg.student.backbones import FreezeMode, WeightsArg, create_backbone
from weakseg.student.decoder import DetailBranch, HierarchicalDecoder
from weakseg.student.heads import SegmentationHead, StrideTwoRefiner


@dataclass(frozen=True)
class DecoderConfig:
    width: int = 128
    out_channels: int = 64
    use_detail: bool = True
    use_binary: bool = True
    output_stride: int = 2  # a residual refiner on the detail branch's stride-2 stem (4: none)

    def __post_init__(self) -> None:
        if self.output_stride not in (2, 4):
            raise WeaksegError(f"decoder.output_stride must be 2 or 4, got {self.output_stride}")
        if self.output_stride == 2 and not self.use_detail:
            raise WeaksegError(
                "decoder.output_stride=2 refines on the detail branch: keep use_detail, "
                "or set decoder.output_stride=4"
            )


class Segmenter(nn.Module):
    """What training, the feature cache, prediction and export rely on, whatever the architecture.

    Input is an RGB ``[0, 1]`` batch of any size; :meth:`prepare` normalises it and pads it (reflect)
    to ``pad_multiple``; :meth:`features` runs the frozen encoder (what the feature cache stores) and
    :meth:`decode` the trainable rest, returning logits at the input size (``"fine"``, optionally
    ``"binary"``).
    """

    pad_multiple: int

    def _set_input_policy(self, mean: Sequence[float], std: Sequence[float], pad_multiple: int) -> None:
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.pad_multiple = int(pad_multiple)

    def prepare(self, image: Tensor) -> Tensor:
        """Normalise and pad (reflect; replicate where the image is smaller than the padding)."""
        x = (image - self.mean) / self.std
        h, w = x.shape[-2:]
        pad_h = (-h) % self.pad_multiple
        pad_w = (-w) % self.pad_multiple
        if pad_h or pad_w:
            x = F.pad(
                x, (0, pad_w, 0, pad_h), mode="reflect" if min(h, w) > max(pad_h, pad_w) else "replicate"
            )
        return x

    def features(self, image: Tensor) -> list[Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, features: list[Tensor], image: Tensor) -> dict[str, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        return self.decode(self.features(image), image)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def encoder(self) -> nn.Module:
        """The pretrained part (frozen or fine-tuned): what the feature cache stores."""
        raise NotImplementedError


class StudentModel(Segmenter):
    def __init__(self, backbone: nn.Module, num_classes: int, config: DecoderConfig | None = None) -> None:
        """``num_classes`` counts the defect classes; the fine head adds background as class 0."""
        super().__init__()
        self.config = config or DecoderConfig()
        self.backbone = backbone
        self.num_classes = num_classes
        strides = list(backbone.strides)
        self.decoder = HierarchicalDecoder(
            backbone.channels,
            strides,
            width=self.config.width,
            out_channels=self.config.out_channels,
            use_detail=self.config.use_detail,
        )
        self.fine_head = SegmentationHead(self.decoder.out_channels, num_classes + 1)
        self.binary_head = SegmentationHead(self.decoder.out_channels, 2) if self.config.use_binary else None
        self.refiner = None
        if self.config.output_stride == 2:
            heads = {"fine": num_classes + 1, **({"binary": 2} if self.config.use_binary else {})}
            self.refiner = StrideTwoRefiner(self.decoder.out_channels, DetailBranch.stem_channels, heads)
        self._set_input_policy(backbone.mean, backbone.std, backbone.pad_multiple)

    def describe(self) -> dict:
        return {"num_classes": self.num_classes, "decoder": asdict(self.config)}

    def encoder(self) -> nn.Module:
        return self.backbone

    def features(self, image: Tensor) -> list[Tensor]:
        """Backbone features of a ``[0, 1]`` image batch (what the feature cache stores)."""
        return list(self.backbone(self.prepare(image)))

    def decode(self, features: list[Tensor], image: Tensor) -> dict[str, Tensor]:
        """Everything after the backbone: logits at the size of ``image`` (``[0, 1]``, unpadded)."""
        size = image.shape[-2:]
        x, stem = self.decoder(features, self.prepare(image))
        logits = {"fine": self.fine_head(x)}
        if self.binary_head is not None:
            logits["binary"] = self.binary_head(x)
        stride = 4
        if self.refiner is not None:
            assert stem is not None
            logits, stride = self.refiner(x, stem, logits), 2
        return {name: self._to_input(value, size, stride) for name, value in logits.items()}

    @staticmethod
    def _to_input(logits: Tensor, size: torch.Size, stride: int) -> Tensor:
        """Logits at ``stride`` -> input resolution (padding cropped off)."""
        h, w = logits.shape[-2:]
        up = F.interpolate(logits, size=(h * stride, w * stride), mode="bilinear", align_corners=False)
        return up[..., : size[0], : size[1]]


#: Segmenters ``create_segmenter`` builds: the student and the baseline it is measured against.
SEGMENTERS = {
    "student": "frozen backbone, hierarchical decoder, detail branch, binary + fine heads",
    "unet": "segmentation_models_pytorch U-Net on the same frozen encoder (baseline; [bench] extra)",
}


def create_segmenter(
    model: str,
    backbone: str,
    num_classes: int,
    *,
    weights: WeightsArg = "default",
    decoder: DecoderConfig | None = None,
    backbone_mode: FreezeMode = "frozen",
) -> Segmenter:
    """The one door to a trainable segmenter: ``model`` is a :data:`SEGMENTERS` name; ``backbone_mode``
    says how much of the backbone trains (:meth:`~weakseg.student.backbones.Backbone.freeze`)."""
    if model == "student":
        return StudentModel(
            create_backbone(backbone, weights=weights, mode=backbone_mode), num_classes, decoder
        )
    if model == "unet":
        from weakseg.student.unet import UnetBaseline

        return UnetBaseline(backbone, num_classes, weights, backbone_mode)
    raise WeaksegError(f"unknown model {model!r}; choose one of {', '.join(SEGMENTERS)}")
