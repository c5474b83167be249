"""``weakseg benchmark`` end to end on a tiny synthetic set: every row, every output, resumption."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import segmentation_models_pytorch  # noqa: F401 - the unet rows; a broken install must fail

from weakseg.benchmark import benchmark
from weakseg.benchmark.plan import REFINES, RUNS
from weakseg.data.synthetic import generate_synthetic
from weakseg.errors import DataError

TINY = {"teachers": ("box", "contrast"), "epochs": 1, "size": 32, "settings": ("batch_size=4",)}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    root = tmp_path_factory.mktemp("benchmark")
    generate_synthetic(root / "data", n_images=20, size=(48, 56), seed=5)
    output = benchmark(root / "data", root / "bench", **TINY)
    return root / "data", root / "bench", output


def test_every_row_is_scored_on_the_same_test_images(finished) -> None:
    _, out, output = finished
    methods = [r.method for r in output.rows]
    assert methods == [
        "teacher: box",
        "teacher: contrast",
        *(s.label for s in REFINES),
        *(s.label for s in RUNS),
    ]
    scored = {r.result.images_scored for r in output.rows}
    test_images = json.loads((out / "results.json").read_text())["images"]["test"]
    assert scored == {test_images}
    assert output.teacher in ("box", "contrast")
    # Every training run is its own process with its own timings; the U-Net really is a U-Net.
    for spec in RUNS:
        timing = json.loads((out / "runs" / f"{spec.key}.done.json").read_text())
        assert timing["epochs"] == 1 and timing["peak_rss_mb"] > 100 and timing["train_wall_seconds"] > 0
    assert "model: unet" in (out / "runs" / "unet" / "config.yaml").read_text()
    assert "use_binary: false" in (out / "runs" / "no-binary-head" / "config.yaml").read_text()
    assert "tau: null" in (out / "runs" / "no-self-correction" / "config.yaml").read_text()
    splits = {(out / "runs" / s.key / "splits.json").read_text() for s in RUNS}
    assert splits == {(out / "splits.json").read_text()}


def test_outputs_table_csv_json_and_report(finished) -> None:
    _, out, output = finished
    doc = json.loads((out / "results.json").read_text())
    assert doc["teacher"] == output.teacher and len(doc["rows"]) == len(output.rows)
    assert set(doc["comparisons"]["refined_minus_teacher_binary_iou"]) == {"box", "contrast"}
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["method"] for r in rows] == [r.method for r in output.rows]
    assert {"iou_crack", "binary_iou", "peak_rss_mb", "predict_images_per_s"} <= set(rows[0])
    table = (out / "table.md").read_text()
    assert "| U-Net (smp, same encoder) | no boxes |" in table and "median s/epoch" in table
    report = (out / "report.html").read_text()
    assert "student - detail branch" in report and "<img" in report


def test_a_second_call_reuses_every_finished_row(finished) -> None:
    data, out, first = finished
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.done.json")}
    again = benchmark(data, out, **TINY)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.done.json")} == stamps
    assert [r.result.metrics["binary_iou"] for r in again.rows] == [
        r.result.metrics["binary_iou"] for r in first.rows
    ]
    assert len(json.loads((out / "calls.json").read_text())) == 2


def test_other_settings_in_the_same_folder_are_refused(finished, run_cli) -> None:
    data, out, _ = finished
    with pytest.raises(DataError, match="epochs"):
        benchmark(data, out, **{**TINY, "epochs": 2})
    done = run_cli("benchmark", data, "--out", out, "--teachers", "box", "--epochs", 1, "--size", 32)
    assert done.returncode == 2 and "teachers" in done.stderr and str(out) in done.stderr


def test_bad_settings_are_refused_before_any_work(tmp_path: Path, finished, run_cli) -> None:
    data, _, _ = finished
    out = tmp_path / "b"
    done = run_cli("benchmark", data, "--out", out, "--set", "lr=oops")
    assert done.returncode == 2 and "lr" in done.stderr and not out.exists()
