"""What every trainable segmenter offers, and the one door that builds them (a registry, like the
teachers' and the readers').

:class:`Segmenter` is the interface training, the feature cache, prediction and export rely on.
Architectures register a builder with :func:`register_segmenter` in their own module (the student in
:mod:`weakseg.student.model`, the U-Net baseline in :mod:`weakseg.student.unet`); this module imports
them only when a name is looked up, so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weakseg.errors import WeaksegError


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


SegmenterBuilder = Callable[..., Segmenter]
_SEGMENTERS: dict[str, tuple[SegmenterBuilder, str]] = {}


def register_segmenter(name: str, help: str) -> Callable[[SegmenterBuilder], SegmenterBuilder]:
    """Register ``builder(backbone, num_classes, *, weights, decoder, backbone_mode)`` under ``name``."""

    def wrap(builder: SegmenterBuilder) -> SegmenterBuilder:
        _SEGMENTERS[name] = (builder, help)
        return builder

    return wrap


def segmenter_names() -> dict[str, str]:
    """Registered segmenters and a one-line description of each."""
    _load_builtin()
    return {name: help for name, (_, help) in _SEGMENTERS.items()}


def create_segmenter(model: str, backbone: str, num_classes: int, **options: Any) -> Segmenter:
    """The one door to a trainable segmenter: ``model`` is a :func:`segmenter_names` name; ``options``
    are ``weights``, ``decoder`` and ``backbone_mode`` (how much of the backbone trains, see
    :meth:`~weakseg.student.backbones.Backbone.freeze`)."""
    _load_builtin()
    if model not in _SEGMENTERS:
        raise WeaksegError(f"unknown model {model!r}; choose one of {', '.join(_SEGMENTERS)}")
    builder, _ = _SEGMENTERS[model]
    return builder(backbone, num_classes, **options)


def _load_builtin() -> None:
    from weakseg.student import model, unet  # noqa: F401  (importing registers them)
