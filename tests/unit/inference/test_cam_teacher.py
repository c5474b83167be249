"""Tag teachers end to end: a tiny classifier, the CAM family into the store, and what the store says."""

from __future__ import annotations

import json

import numpy as np
import pytest

from weakseg.annotations.readers import load_annotations
from weakseg.annotations.schema import PSEUDO_PREFIX
from weakseg.data.samples import IGNORE_INDEX, record_targets
from weakseg.pseudolabel.runner import pseudo_label
from weakseg.pseudolabel.store import load_pseudo
from weakseg.teachers import create_teacher
from weakseg.training.classifier import load_classifier

TAG_TEACHERS = ("cam", "gradcam", "gradcam++", "layercam", "region-cam")


def test_the_classifier_run_keeps_its_config_splits_and_test_scores(tag_classifier) -> None:
    run = tag_classifier.run
    for name in ("config.yaml", "class_map.json", "splits.json", "metrics.csv", "metrics.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    assert set(test["auroc"]) == set(test["f1"]) == set(load_classifier(run).class_map.names)
    assert 0.0 <= test["accuracy"] <= 1.0


@pytest.mark.parametrize("name", TAG_TEACHERS)
def test_each_tag_teacher_maps_only_the_tagged_class(tag_classifier, name) -> None:
    teacher = create_teacher(name, classifier=str(tag_classifier.run), fg_threshold=0.3, bg_threshold=0.05)
    image = np.random.default_rng(0).integers(0, 255, (56, 72), dtype=np.uint8)
    masks = teacher.label_tags(image, (2,))
    assert [m.class_id for m in masks] == [2]
    (m,) = masks
    assert m.mask.shape == m.ignore.shape == (56, 72)
    assert not (m.mask & m.ignore).any()
    assert 0.0 <= m.quality <= 1.0 and 0.0 <= m.confidence <= 1.0
    assert teacher.label_tags(image, ()) == []


def test_a_tag_teacher_refuses_boxes(tag_classifier) -> None:
    teacher = create_teacher("gradcam", classifier=str(tag_classifier.run))
    with pytest.raises(Exception, match="image-level tags"):
        teacher.predict(np.zeros((8, 8), np.uint8), np.array([[0, 0, 4, 4]]), np.array([1]))


def test_bad_tag_teacher_options_are_refused(tmp_path, tag_classifier) -> None:
    with pytest.raises(Exception, match="does not exist"):
        create_teacher("gradcam", classifier=str(tmp_path))
    with pytest.raises(Exception, match="bg_threshold"):
        create_teacher("gradcam", classifier=str(tag_classifier.run), fg_threshold=0.1, bg_threshold=0.5)
    with pytest.raises(Exception, match="layers"):
        create_teacher("layercam", classifier=str(tag_classifier.run), layers="s3")


def test_the_store_holds_tagged_masks_ignore_regions_and_all_background_negatives(
    tmp_path, tag_classifier
) -> None:
    data = tag_classifier.data
    gt = load_annotations(data)
    result = pseudo_label(
        data,
        "region-cam",
        tmp_path / "store",
        teacher_config={"classifier": str(tag_classifier.run), "fg_threshold": 0.3, "bg_threshold": 0.05},
    )
    assert result.failed == 0 and result.merged is not None
    masks = load_pseudo(tmp_path / "store").by_file_name()
    negatives = [r for r in gt.images if r.is_negative]
    tagged = [r for r in gt.images if r.image_tags]
    assert negatives and tagged
    for record in negatives:  # defect-free: annotated, nothing in it, so every pixel is background
        pseudo = masks[record.file_name]
        assert pseudo.annotated and not pseudo.instances
        labels, *_ = record_targets(pseudo)
        assert (labels == 0).all()
    crowd_seen = False
    for record in tagged:
        pseudo = masks[record.file_name]
        assert pseudo.annotated
        assert {i.class_id for i in pseudo.instances} <= set(record.image_tags)  # untagged: no mask
        assert all(i.origin == PSEUDO_PREFIX + "region-cam" for i in pseudo.instances)
        for inst in pseudo.instances:
            if inst.crowd:
                crowd_seen = True
                labels, *_ = record_targets(pseudo)
                from weakseg.annotations import masks as mask_ops

                assert (labels[mask_ops.decode(inst.mask)] == IGNORE_INDEX).all()
    assert crowd_seen  # with thresholds 0.3 / 0.05 some pixels are undecided


def test_student_tags_relabels_from_tags(tmp_path, trained) -> None:
    teacher = create_teacher("student-tags", run=str(trained.run))
    gt = load_annotations(trained.data)
    record = next(r for r in gt.images if r.image_tags)
    from weakseg.annotations.images import read_image

    image = read_image(gt.image_path(record))
    (only,) = record.image_tags[:1]
    masks = teacher.label_tags(image, (only,))
    assert [m.class_id for m in masks] == [only]
    assert teacher.label_tags(image, ()) == []
