"""Training samples from an annotation set: canvas image, class-id target, per-pixel weights, boxes.

Every image goes to one canvas through :mod:`weakseg.data.preprocess` (aspect kept by default), so the
features of every image can be cached in one memory-mapped array. Predictions are always brought back
to the original resolution for evaluation.

Targets treat boxes as boxes (METHODS.md 2.2, BoxTeacher / BoxSeg):

* outside every box of an annotated image is certain background, and a known defect-free image is
  certain everywhere;
* a human mask is certain inside its box too;
* a teacher's mask labels its box (defect where the mask is, background elsewhere in the box), with
  its quality as the pixels' weight when ``use_quality`` is set; only there may self-correction
  relabel background (the ``correctable`` map), since only there can a teacher have missed defect;
* a box whose teacher mask is empty or failed (score 0), or a box without any mask, is ignored by the
  pixel losses: it carries only the box terms. Training it as background would teach the student that
  the defect the box encloses is not one;
* a crowd instance (COCO's "ignore this region"; a tag teacher's undecided pixels) is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from weakseg.annotations import masks as mask_ops
from weakseg.annotations.images import read_image
from weakseg.annotations.schema import ORIGIN_GT_MASK, AnnotationSet, ImageRecord, Instance
from weakseg.data.preprocess import (
    IGNORE_INDEX,
    Geometry,
    geometry,
    image_to_canvas,
    labels_to_canvas,
    weights_to_canvas,
)

__all__ = ["IGNORE_INDEX", "SampleConfig", "SegmentationSamples", "is_certain"]


@dataclass(frozen=True)
class SampleConfig:
    size: tuple[int, int] = (320, 320)  # (height, width) of the canvas the model trains at
    resize: str = "letterbox"  # see weakseg.data.preprocess
    use_quality: bool = False  # weight each pseudo-mask's box by its quality score
    min_quality_weight: float = 0.1
    box_fill_as_boxes: bool = False  # a teacher mask filling its box: box terms only inside it


def is_certain(inst: Instance) -> bool:
    """A human-drawn mask: no teacher's noise to correct."""
    return inst.mask is not None and inst.origin == ORIGIN_GT_MASK


def _usable(inst: Instance) -> bool:
    """A mask that says something: present, not empty, and not scored as failed."""
    if inst.mask is None or (inst.score is not None and inst.score <= 0):
        return False
    return mask_ops.area(inst.mask) > 0


def _box_slice(box: tuple[float, float, float, float], shape: tuple[int, int]) -> tuple[slice, slice]:
    x0, y0, x1, y1 = box
    h, w = shape
    r0, c0 = min(max(int(np.floor(y0)), 0), h), min(max(int(np.floor(x0)), 0), w)
    r1, c1 = min(max(int(np.ceil(y1)), r0 + 1), h), min(max(int(np.ceil(x1)), c0 + 1), w)
    return slice(r0, r1), slice(c0, c1)


def fills_its_box(inst: Instance, fraction: float = 0.95) -> bool:
    """A teacher mask that covers (nearly) its whole box: it says nothing the box did not."""
    if inst.mask is None or is_certain(inst):
        return False
    x0, y0, x1, y1 = inst.box
    return mask_ops.area(inst.mask) >= fraction * max(1.0, (x1 - x0) * (y1 - y0))


def record_targets(
    record: ImageRecord,
    use_quality: bool = False,
    min_quality_weight: float = 0.1,
    box_fill_as_boxes: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, pixel weights, the self-correctable map and the box-class map of one record.

    ``box_class`` holds the class of every box whose interior the pixel losses ignore (failed masks,
    boxes without a mask, and box-filling masks with ``box_fill_as_boxes``), so the fine head can
    still learn the box's class there while the box terms decide its shape.
    """
    shape = record.size
    box_class = np.zeros(shape, np.uint8)
    if not record.annotated and not record.instances:
        return (
            np.full(shape, IGNORE_INDEX, np.uint8),
            np.ones(shape, np.float32),
            np.zeros(shape, np.uint8),
            box_class,
        )
    labels = np.zeros(shape, np.uint8)
    weights = np.ones(shape, np.float32)
    correctable = np.zeros(shape, np.uint8)
    ignored = [inst for inst in record.instances if inst.crowd and inst.mask is not None]
    instances = [inst for inst in record.instances if not inst.crowd]
    usable = [_usable(inst) and not (box_fill_as_boxes and fills_its_box(inst)) for inst in instances]
    for inst, ok in zip(instances, usable, strict=True):
        rows, cols = _box_slice(inst.box, shape)
        if not ok:
            labels[rows, cols] = IGNORE_INDEX
            box_class[rows, cols] = inst.class_id
        elif not is_certain(inst):
            correctable[rows, cols] = 1
            if use_quality and inst.score is not None:
                region = weights[rows, cols]
                np.minimum(region, max(float(inst.score), min_quality_weight), out=region)
    for inst, ok in zip(instances, usable, strict=True):
        if ok:
            labels[mask_ops.decode(inst.mask)] = inst.class_id
    for inst in ignored:
        labels[mask_ops.decode(inst.mask)] = IGNORE_INDEX
    box_class[labels != IGNORE_INDEX] = 0
    return labels, weights, correctable, box_class


class SegmentationSamples(Dataset):
    """One item per image: ``image``, ``target`` (class ids, IGNORE_INDEX = unknown), ``weights``,
    ``correctable`` (where self-correction may relabel), ``boxes`` (canvas pixels) and ``index``."""

    def __init__(self, ann: AnnotationSet, config: SampleConfig | None = None) -> None:
        self.ann = ann
        self.config = config or SampleConfig()

    def __len__(self) -> int:
        return len(self.ann.images)

    def record(self, index: int) -> ImageRecord:
        return self.ann.images[index]

    def geometry(self, index: int) -> Geometry:
        return geometry(self.ann.images[index].size, self.config.size, self.config.resize)

    def image(self, index: int) -> torch.Tensor:
        record = self.ann.images[index]
        return image_to_canvas(read_image(self.ann.image_path(record)), self.geometry(index))

    def targets(self, index: int) -> dict[str, torch.Tensor]:
        """``target``, ``weights``, ``correctable`` and ``box_class`` on the canvas."""
        geom = self.geometry(index)
        labels, weights, correctable, box_class = record_targets(
            self.record(index),
            self.config.use_quality,
            self.config.min_quality_weight,
            self.config.box_fill_as_boxes,
        )
        return {
            "target": torch.from_numpy(labels_to_canvas(labels, geom)).long(),
            "weights": torch.from_numpy(weights_to_canvas(weights, geom)),
            # Shrunk like labels (a correctable box never vanishes); padding is not correctable.
            "correctable": torch.from_numpy(labels_to_canvas(correctable, geom, pad_value=0) > 0),
            "box_class": torch.from_numpy(labels_to_canvas(box_class, geom, pad_value=0)).long(),
        }

    def boxes(self, index: int) -> torch.Tensor:
        record = self.ann.images[index]
        scaled = self.geometry(index).scale_boxes([inst.box for inst in record.instances if not inst.crowd])
        return torch.from_numpy(scaled)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        return {"image": self.image(index), **self.targets(index), "boxes": self.boxes(index), "index": index}
