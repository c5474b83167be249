"""The student: frozen backbone -> hierarchical decoder -> binary and fine heads.

Input is an RGB float tensor in ``[0, 1]`` of any size; normalisation and padding to the backbone's
multiple happen inside the model, so training, evaluation, prediction and the exported graph share one
pre-processing path. Outputs are logits at the input resolution.

The backbone is frozen, so its features can be computed once and cached; :meth:`StudentModel.decode`
runs everything after the backbone from such cached features.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weakseg.errors import WeaksegError
from weakseg.student.backbones import FreezeMode, WeightsArg, create_backbone
from weakseg.student.decoder import DetailBranch, HierarchicalDecoder
from weakseg.student.heads import SegmentationHead, StrideTwoRefiner
from weakseg.student.segmenter import Segmenter, register_segmenter


@dataclass(frozen=True)
class DecoderConfig:
    width: int = 128
    out_channels: int = 64
    use_detail: bool = True
    use_binary: bool = True
    output_stride: int = 2  # a residual refiner on the detail branch's stride-2 stem (4: none)
    upsample_kernel: int = 1  # the learned 2x upsampling's convolution (3: as runs before 2026-12-06)

    def __post_init__(self) -> None:
        if self.output_stride not in (2, 4):
            raise WeaksegError(f"decoder.output_stride must be 2 or 4, got {self.output_stride}")
        if self.upsample_kernel not in (1, 3):
            raise WeaksegError(f"decoder.upsample_kernel must be 1 or 3, got {self.upsample_kernel}")
        if self.output_stride == 2 and not self.use_detail:
            raise WeaksegError(
                "decoder.output_stride=2 refines on the detail branch: keep use_detail, "
                "or set decoder.output_stride=4"
            )


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
            upsample_kernel=self.config.upsample_kernel,
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


@register_segmenter("student", "frozen backbone, hierarchical decoder, detail branch, binary + fine heads")
def _build_student(
    backbone: str,
    num_classes: int,
    *,
    weights: WeightsArg = "default",
    decoder: DecoderConfig | None = None,
    backbone_mode: FreezeMode = "frozen",
) -> StudentModel:
    return StudentModel(create_backbone(backbone, weights=weights, mode=backbone_mode), num_classes, decoder)
