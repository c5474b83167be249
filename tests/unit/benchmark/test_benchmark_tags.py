"""``weakseg benchmark --supervision tags`` end to end on a tiny synthetic set: the classifier, every
CAM teacher's store with the ablations, the self-training rounds and the human-mask reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weakseg.benchmark import benchmark
from weakseg.benchmark.tags import CAM_ROWS, GROUP_TAGS
from weakseg.data.synthetic import generate_synthetic
from weakseg.errors import WeaksegError

TAGS = {
    "teachers": (),
    "epochs": 1,
    "size": 32,
    "settings": ("batch_size=4",),
    "supervision": ("tags",),
    "tag_rounds": 2,
    "classifier_settings": ("epochs=1", "size=32", "batch_size=4", "cam_channels=16"),
}


@pytest.fixture(scope="module")
def tags_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    root = tmp_path_factory.mktemp("tags-bench")
    generate_synthetic(root / "data", n_images=20, size=(48, 56), seed=5)
    return root / "data", root / "bench", benchmark(root / "data", root / "bench", **TAGS)


def test_the_tags_route_has_every_cam_row_each_round_and_the_reference(tags_bench) -> None:
    _, out, result = tags_bench
    keys = [r.key for r in result.rows]
    assert keys[0] == "supervised"  # the reference, trained on human masks
    tag_keys = [r.key for r in result.rows if r.group == GROUP_TAGS]
    assert tag_keys == [
        *(f"tags:{spec.key}" for spec in CAM_ROWS),
        "tags-round1",
        "tags-relabelled-round2",
        "tags-round2",
        "tags-round2-gated",
    ]
    assert not any(k.startswith("teacher:") for k in keys)  # no box route asked for
    test = {r.file_name for r in result.rows[0].masks.images}
    for row in result.rows:  # every row on the same test images
        assert {r.file_name for r in row.masks.images} == test, row.key
    c = result.comparisons
    for key in (
        "tags_region_cam_minus_gradcam_binary_iou",
        "tags_fgbp_gain_binary_iou",
        "tags_region_weighting_gain_binary_iou",
        "tags_negatives_gain_binary_iou",
        "tags_student_over_supervised_binary_iou",
        "tags_gate_gain_binary_iou",
    ):
        assert key in c
    assert set(c["tags_round_gains_binary_iou"]) == {"round2"}
    doc = json.loads((out / "results.json").read_text())
    assert doc["settings"]["supervision"] == ["tags"]
    assert "pseudo-masks: region-aware CAM + FGBP" in (out / "table.md").read_text()
    assert "image tags" in (out / "report.html").read_text()
    # the classifier without negatives never saw a defect-free training image
    metrics = json.loads((out / "tags" / "classifier-no-negatives" / "metrics.json").read_text())
    assert metrics["test"] is not None


def test_a_second_call_reuses_the_tags_route(tags_bench) -> None:
    data, out, first = tags_bench
    again = benchmark(data, out, **TAGS)
    assert [r.to_dict()["binary_iou"] for r in again.rows] == [r.to_dict()["binary_iou"] for r in first.rows]


def test_a_bad_supervision_or_classifier_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WeaksegError, match="supervision"):
        benchmark(tmp_path, tmp_path / "b", **{**TAGS, "supervision": ("pixels",)})
    with pytest.raises(WeaksegError, match="unknown setting"):
        benchmark(tmp_path, tmp_path / "b", **{**TAGS, "classifier_settings": ("colour=1",)})


def test_boxes_and_tags_side_by_side_in_one_table(tags_bench, tmp_path: Path) -> None:
    data, _, _ = tags_bench
    both = {
        **TAGS,
        "teachers": ("box",),
        "rows": ("student",),
        "supervision": ("boxes", "tags"),
        "tag_rounds": 1,
    }
    result = benchmark(data, tmp_path / "both", **both)
    groups = {r.key: r.group for r in result.rows}
    assert groups["teacher:box"] == "boxes given" and groups["student"] == "no boxes"
    assert groups["supervised"] == "no boxes"  # added as the tags route's reference
    assert groups["tags:region-cam"] == groups["tags-round1"] == GROUP_TAGS
    assert "tags-round1-gated" in groups
    report = (tmp_path / "both" / "report.html").read_text()
    assert "teacher: box" in report and "tags student (round 1)" in report
