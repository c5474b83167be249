"""The classifier gate: an image the tag classifier calls defect-free keeps no mask."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from weakseg.annotations.readers import load_annotations
from weakseg.inference.gate import gate_by_classifier


def test_the_gate_empties_exactly_the_images_below_the_threshold(tag_classifier) -> None:
    masks = load_annotations(tag_classifier.data)  # stand-in predictions: the human masks
    gated, probs = gate_by_classifier(masks, tag_classifier.run, threshold=0.5)
    assert probs.shape == (len(masks.images), len(masks.class_map))
    for before, after, p in zip(masks.images, gated.images, probs, strict=True):
        assert after.file_name == before.file_name
        assert after.instances == (before.instances if p.max() >= 0.5 else [])
    # a threshold above every probability empties every image; the input is never changed
    everything, _ = gate_by_classifier(masks, tag_classifier.run, threshold=float(np.nextafter(1, 0)))
    assert not any(r.instances for r in everything.images)
    assert any(r.instances for r in masks.images)


def test_the_gate_refuses_other_classes_and_bad_thresholds(tag_classifier) -> None:
    masks = load_annotations(tag_classifier.data)
    with pytest.raises(ValueError, match="threshold"):
        gate_by_classifier(masks, tag_classifier.run, threshold=1.0)
    from weakseg.annotations.schema import ClassMap

    other = dataclasses.replace(masks, class_map=ClassMap(("a",)))
    with pytest.raises(ValueError, match="classes"):
        gate_by_classifier(other, tag_classifier.run)


def test_predict_behind_the_gate_masks_only_the_images_it_lets_through(
    tmp_path, trained, tag_classifier
) -> None:
    from weakseg.annotations.images import read_image
    from weakseg.inference.gate import ClassifierGate
    from weakseg.inference.predict import predict

    plain = predict(trained.run, trained.data, tmp_path / "plain")
    ann = load_annotations(trained.data)
    gate = ClassifierGate(tag_classifier.run)
    probs = [gate.probabilities(read_image(ann.image_path(r))).max() for r in ann.images]
    threshold = float(np.median(probs))  # about half the images pass
    gated = predict(
        trained.run, trained.data, tmp_path / "gated", gate=tag_classifier.run, gate_threshold=threshold
    )
    predicted = load_annotations(tmp_path / "plain" / "predictions.json", "coco").by_file_name()
    expected = sum(
        len(predicted[r.file_name].instances)
        for r, p in zip(ann.images, probs, strict=True)
        if p >= threshold
    )
    assert gated.instances == expected < plain.instances
    assert '"gate": {"classifier"' in (tmp_path / "gated" / "predictions.json").read_text()
