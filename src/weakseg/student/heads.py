"""The two heads on the stride-4 map: binary localisation (defect vs background) and fine classes."""

from __future__ import annotations

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
