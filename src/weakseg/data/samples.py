"""Training samples from an annotation set: image, class-id target, per-pixel weights, box masks.

Everything is resized to one fixed training size (as the reference protocol does), so features of
every image can be cached in one memory-mapped array. Predictions are always brought back to the
original resolution for evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from weakseg.annotations import masks as mask_ops
from weakseg.annotations.images import read_image
from weakseg.annotations.schema import AnnotationSet, ImageRecord

#: Target value for pixels that carry no supervision (unannotated images).
IGNORE_INDEX = 255


@dataclass(frozen=True)
class SampleConfig:
    size: tuple[int, int] = (256, 256)  # (height, width) the model trains at
    use_quality: bool = False  # weight each pseudo-mask's pixels by its quality score
    min_quality_weight: float = 0.1


def to_rgb_tensor(image: np.ndarray, size: tuple[int, int] | None = None) -> torch.Tensor:
    """uint8 gray or RGB array -> float ``[3, H, W]`` in ``[0, 1]``, optionally resized (area/bilinear)."""
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    if size is not None and rgb.shape[:2] != size:
        shrink = rgb.shape[0] > size[0] and rgb.shape[1] > size[1]
        rgb = cv2.resize(
            rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
    return torch.from_numpy(np.array(rgb[..., :3], copy=True)).permute(2, 0, 1).float() / 255.0


def _resize_nearest(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if arr.shape[:2] == size:
        return arr
    return cv2.resize(arr, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


class SegmentationSamples(Dataset):
    """One item per image: ``image``, ``target`` (class ids, IGNORE_INDEX = unknown), ``weights``,
    ``boxes`` (instance boxes scaled to the training size) and ``index``."""

    def __init__(self, ann: AnnotationSet, config: SampleConfig | None = None) -> None:
        self.ann = ann
        self.config = config or SampleConfig()

    def __len__(self) -> int:
        return len(self.ann.images)

    def record(self, index: int) -> ImageRecord:
        return self.ann.images[index]

    def image(self, index: int) -> torch.Tensor:
        record = self.ann.images[index]
        return to_rgb_tensor(read_image(self.ann.image_path(record)), self.config.size)

    def target(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Class-id map and per-pixel weights at the training size."""
        record = self.ann.images[index]
        size = self.config.size
        if not record.annotated and not record.instances:
            target = np.full(size, IGNORE_INDEX, dtype=np.uint8)
            return torch.from_numpy(target).long(), torch.ones(size)
        labels = mask_ops.label_map(record)
        weights = np.ones(record.size, dtype=np.float32)
        if self.config.use_quality:
            for inst in record.instances:
                if inst.mask is not None and inst.score is not None:
                    weights[mask_ops.decode(inst.mask)] = max(
                        float(inst.score), self.config.min_quality_weight
                    )
        return (
            torch.from_numpy(_resize_nearest(labels, size)).long(),
            torch.from_numpy(_resize_nearest(weights, size)),
        )

    def boxes(self, index: int) -> torch.Tensor:
        record = self.ann.images[index]
        sy, sx = self.config.size[0] / record.height, self.config.size[1] / record.width
        boxes = [(x0 * sx, y0 * sy, x1 * sx, y1 * sy) for x0, y0, x1, y1 in (i.box for i in record.instances)]
        return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)

    def box_mask(self, index: int) -> torch.Tensor:
        """Union of the image's instance boxes at the training size (for the BoxInst terms)."""
        mask = torch.zeros(self.config.size, dtype=torch.bool)
        for x0, y0, x1, y1 in self.boxes(index).tolist():
            mask[int(y0) : max(int(y0) + 1, math.ceil(y1)), int(x0) : max(int(x0) + 1, math.ceil(x1))] = True
        return mask

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        target, weights = self.target(index)
        return {
            "image": self.image(index),
            "target": target,
            "weights": weights,
            "boxes": self.boxes(index),
            "index": index,
        }
