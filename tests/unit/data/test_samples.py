"""Training samples: the canvas, boxes treated as boxes, and where self-correction may act."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from weakseg.annotations import masks as mask_ops
from weakseg.annotations.readers import load_annotations
from weakseg.annotations.schema import AnnotationSet, ClassMap, ImageRecord, Instance, pseudo_origin
from weakseg.data.samples import IGNORE_INDEX, SampleConfig, SegmentationSamples
from weakseg.data.synthetic import generate_synthetic


def test_samples_have_the_canvas_size_and_targets(tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "d", n_images=6, size=(80, 100), seed=2)
    ann = load_annotations(tmp_path / "d")
    samples = SegmentationSamples(ann, SampleConfig(size=(64, 64)))
    item = samples[1]
    assert item["image"].shape == (3, 64, 64) and item["image"].min() >= 0 and item["image"].max() <= 1
    assert item["target"].shape == (64, 64) and item["target"].dtype == torch.long
    labelled = [samples[i] for i in range(len(samples)) if ann.images[i].instances]
    assert any((s["target"] > 0).any() for s in labelled)
    assert all(s["boxes"].shape[1] == 4 for s in labelled)
    # 80 x 100 letterboxed into 64 x 64: content 51 x 64, the rest of the rows is padding (ignored).
    assert (item["target"][52:] == IGNORE_INDEX).all() and (item["target"][:51] != IGNORE_INDEX).all()


def _record(instances: list[Instance], size: tuple[int, int] = (40, 60)) -> ImageRecord:
    return ImageRecord("a.png", size[1], size[0], instances=instances)


def _mask(size: tuple[int, int], rows: slice, cols: slice) -> dict:
    m = np.zeros(size, bool)
    m[rows, cols] = True
    return mask_ops.encode(m)


def _samples(tmp_path: Path, records: list[ImageRecord], **kw) -> SegmentationSamples:
    ann = AnnotationSet(tmp_path, ClassMap(("scratch",)), records)
    return SegmentationSamples(ann, SampleConfig(size=(40, 60), **kw))


def test_a_failed_or_empty_teacher_mask_ignores_its_box_not_trains_it_as_background(tmp_path: Path) -> None:
    size = (40, 60)
    empty = Instance(1, (5, 5, 20, 20), _mask(size, slice(0, 0), slice(0, 0)), pseudo_origin("contrast"), 0.0)
    failed = Instance(1, (30, 10, 50, 30), _mask(size, slice(12, 20), slice(32, 40)), pseudo_origin("c"), 0.0)
    box_only = Instance(1, (25, 32, 35, 38))
    t = _samples(tmp_path, [_record([empty, failed, box_only])]).targets(0)["target"]
    assert (t[5:20, 5:20] == IGNORE_INDEX).all()
    assert (t[10:30, 30:50] == IGNORE_INDEX).all()
    assert (t[32:38, 25:35] == IGNORE_INDEX).all()
    outside = torch.ones_like(t, dtype=torch.bool)
    for r, c in (
        (slice(5, 20), slice(5, 20)),
        (slice(10, 30), slice(30, 50)),
        (slice(32, 38), slice(25, 35)),
    ):
        outside[r, c] = False
    assert (t[outside] == 0).all()  # outside every box: certain background


def test_self_correction_may_act_only_inside_teacher_boxes(tmp_path: Path) -> None:
    size = (40, 60)
    teacher = Instance(1, (5, 5, 25, 25), _mask(size, slice(8, 20), slice(8, 20)), pseudo_origin("box"), 0.7)
    human = Instance(1, (35, 5, 55, 25), _mask(size, slice(8, 20), slice(38, 50)), "gt_mask")
    negative = ImageRecord("b.png", size[1], size[0], instances=[])
    samples = _samples(tmp_path, [_record([teacher, human]), negative], use_quality=True)
    item = samples.targets(0)
    assert item["correctable"][5:25, 5:25].all() and item["correctable"].sum() == 20 * 20
    assert (item["target"][8:20, 8:20] == 1).all() and (item["target"][8:20, 38:50] == 1).all()
    # Quality weights the teacher's whole box (its background is as uncertain as its mask), nothing else.
    assert torch.allclose(item["weights"][5:25, 5:25], torch.tensor(0.7))
    assert item["weights"].sum() == _expected_sum(size, 20 * 20, 0.7)
    assert not samples.targets(1)["correctable"].any()  # a defect-free image is certain everywhere


def _expected_sum(size: tuple[int, int], n_weighted: int, weight: float) -> torch.Tensor:
    return torch.tensor(size[0] * size[1] - n_weighted + n_weighted * weight, dtype=torch.float32)


def test_unannotated_images_are_ignored(tmp_path: Path) -> None:
    record = ImageRecord("c.png", 60, 40, instances=[], annotated=False)
    item = _samples(tmp_path, [record]).targets(0)
    assert (item["target"] == IGNORE_INDEX).all() and not item["correctable"].any()


def test_a_box_filling_teacher_mask_can_be_left_to_the_box_terms(tmp_path: Path) -> None:
    size = (40, 60)
    fill = Instance(1, (5, 5, 25, 25), _mask(size, slice(5, 25), slice(5, 25)), pseudo_origin("box"), 0.25)
    shaped = Instance(1, (30, 5, 50, 25), _mask(size, slice(8, 20), slice(33, 45)), pseudo_origin("c"), 0.8)
    plain = _samples(tmp_path, [_record([fill, shaped])]).targets(0)
    assert (plain["target"][5:25, 5:25] == 1).all() and not plain["box_class"].any()
    boxes = _samples(tmp_path, [_record([fill, shaped])], box_fill_as_boxes=True).targets(0)
    assert (boxes["target"][5:25, 5:25] == IGNORE_INDEX).all() and (boxes["box_class"][5:25, 5:25] == 1).all()
    assert torch.equal(boxes["target"][:, 30:], plain["target"][:, 30:])  # a mask with a shape is kept


def test_a_crowd_region_is_ignored_and_gives_no_box() -> None:
    """A tag teacher's undecided pixels come as a crowd instance: ignored, whatever lies under them."""
    from weakseg.data.samples import record_targets

    defect = np.zeros((6, 8), bool)
    defect[2:4, 2:4] = True
    undecided = np.zeros((6, 8), bool)
    undecided[1:5, 1:6] = True
    undecided &= ~defect
    origin = pseudo_origin("region-cam")
    record = ImageRecord(
        "a.png",
        8,
        6,
        [
            Instance(1, (2, 2, 4, 4), mask_ops.encode(defect), origin, 0.8),
            Instance(1, (1, 1, 6, 5), mask_ops.encode(undecided), origin, 0.8, crowd=True),
        ],
    )
    labels, *_ = record_targets(record)
    assert (labels[defect] == 1).all()
    assert (labels[undecided] == IGNORE_INDEX).all()
    assert (labels[~(defect | undecided)] == 0).all()
    ann = AnnotationSet(Path(), ClassMap(("scratch",)), [record])
    assert SegmentationSamples(ann, SampleConfig(size=(6, 8))).boxes(0).shape == (1, 4)
