"""``weakseg benchmark`` end to end on a tiny synthetic set: every row, every output, resumption; then
training seeds and refine -> retrain rounds on a ``--rows`` subset."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import segmentation_models_pytorch  # noqa: F401 - the unet rows; a broken install must fail
import yaml

from weakseg.annotations.readers import load_annotations
from weakseg.benchmark import benchmark
from weakseg.benchmark.plan import make_plan
from weakseg.benchmark.runner import format_spread
from weakseg.data.synthetic import generate_synthetic
from weakseg.errors import DataError

TINY = {"teachers": ("box", "contrast"), "epochs": 1, "size": 32, "settings": ("batch_size=4",), "rounds": 1}
#: Two seeds and two rounds on the rows round 2 needs: student, round 1's store, round 2's student.
ROUNDS = {**TINY, "teachers": ("box",), "rounds": 2, "seeds": (0, 1), "rows": ("refined-round2",)}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("benchmark-data")
    generate_synthetic(root / "data", n_images=20, size=(48, 56), seed=5)
    return root / "data"


@pytest.fixture(scope="module")
def finished(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    out = tmp_path_factory.mktemp("benchmark") / "bench"
    return data, out, benchmark(data, out, **TINY)


@pytest.fixture(scope="module")
def rounds(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    out = tmp_path_factory.mktemp("benchmark-rounds") / "bench"
    return data, out, benchmark(data, out, **ROUNDS)


def _config(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


def _assert_cache_built_once(out: Path, **first_user: str) -> None:
    """Runs (and seeds, and rounds) computing the same features share one cache (name=first run to
    use it), built by that run and never rebuilt by a later one."""
    for name, key in first_user.items():
        done = (out / "runs" / key / "seed0.done.json").stat().st_mtime_ns
        for part in ("train", "val"):
            index = out / "cache" / name / part / "index.json"
            assert index.stat().st_mtime_ns < done, index
    assert not list((out / "runs").glob("*/seed*/cache"))


def test_every_row_is_scored_on_the_same_test_images(finished) -> None:
    _, out, output = finished
    plan = make_plan(1)
    methods = [r.method for r in output.rows]
    assert methods == [
        "teacher: box",
        "teacher: contrast",
        *(s.label for s in plan.refines),
        *(s.label for s in plan.runs),
    ]
    assert "student + mean teacher" in methods and "refined: student (threshold 0.5, no TTA)" in methods
    assert not any("round" in m for m in methods)  # --rounds 1: no retraining
    scored = {r.result.images_scored for r in output.rows}
    test_images = json.loads((out / "results.json").read_text())["images"]["test"]
    assert scored == {test_images}
    assert output.teacher in ("box", "contrast")
    # Every training run is its own process with its own timings, in its seed's folder.
    for spec in plan.runs:
        timing = json.loads((out / "runs" / spec.key / "seed0.done.json").read_text())
        assert timing["epochs"] == 1 and timing["peak_rss_mb"] > 100 and timing["train_wall_seconds"] > 0
    configs = {s.key: _config(out / "runs" / s.key / "seed0") for s in plan.runs}
    assert configs["unet"]["model"] == "unet" and configs["unet"]["backbone_mode"] == "frozen"
    assert configs["no-binary-head"]["decoder"]["use_binary"] is False
    assert configs["no-self-correction"]["loss"]["tau"] is None
    assert configs["mean-teacher"]["mean_teacher"]["enabled"] is True
    assert configs["student"]["mean_teacher"]["enabled"] is False
    for key in ("unet-finetuned", "unet-finetuned-supervised"):
        c = configs[key]
        assert (c["model"], c["backbone_mode"], c["feature_cache"], c["loss"]["tau"]) == (
            "unet",
            "all",
            False,
            None,
        )
    assert configs["supervised"]["val_masks"] == configs["unet-finetuned-supervised"]["val_masks"] == "gt"
    provenance = {
        s.key: json.loads((out / "runs" / s.key / "seed0" / "run.json").read_text()) for s in plan.runs
    }
    assert provenance["unet-finetuned-supervised"]["pseudo_kind"] == "dataset"
    assert provenance["unet-finetuned"]["pseudo"] == str((out / "teachers" / output.teacher).resolve())
    splits = {(out / "runs" / s.key / "seed0" / "splits.json").read_text() for s in plan.runs}
    assert splits == {(out / "splits.json").read_text()}
    _assert_cache_built_once(out, student="student", unet="unet")
    # The refine rows: box-aware threshold with TTA by default, the old fixed 0.5 without as ablation.
    stores = {
        key: json.loads((out / "refined" / key / "seed0" / "store.json").read_text())["config"]
        for key in ("refined-student", "refined-student-fixed")
    }
    assert (stores["refined-student"]["threshold"], stores["refined-student"]["tta"]) == ("box", True)
    assert (stores["refined-student-fixed"]["threshold"], stores["refined-student-fixed"]["tta"]) == (
        0.5,
        False,
    )


def test_outputs_table_csv_json_and_report(finished) -> None:
    _, out, output = finished
    doc = json.loads((out / "results.json").read_text())
    assert doc["teacher"] == output.teacher and len(doc["rows"]) == len(output.rows)
    assert doc["settings"]["seeds"] == [0] and doc["settings"]["rounds"] == 1
    assert doc["settings"]["rows"] == list(make_plan(1).keys)
    comparisons = doc["comparisons"]
    assert set(comparisons["refined_minus_teacher_binary_iou"]) == {"box", "contrast"}
    for key in (
        "supervised_minus_unet_finetuned_supervised_binary_iou",
        "student_over_supervised_binary_iou",
        "student_minus_unet_finetuned_binary_iou",
        "box_aware_refine_gain_binary_iou",
        "refined_minus_best_teacher_binary_iou",
    ):
        assert isinstance(comparisons[key], float), key
    rows = {r["key"]: r for r in doc["rows"]}
    assert comparisons["mean_teacher_gain_binary_iou"] == pytest.approx(
        rows["mean-teacher"]["binary_iou"] - rows["student"]["binary_iou"]
    )
    assert comparisons["box_aware_refine_gain_binary_iou"] == pytest.approx(
        rows["refined-student"]["binary_iou"] - rows["refined-student-fixed"]["binary_iou"]
    )
    assert doc["comparisons_spread"]["mean_teacher_gain_binary_iou"] is None  # one seed
    assert "spread" not in rows["student"] and [s["seed"] for s in rows["student"]["seeds"]] == [0]
    with open(out / "results.csv", newline="") as fh:
        lines = list(csv.DictReader(fh))
    assert [r["method"] for r in lines] == [r.method for r in output.rows]  # one seed: one line a row
    assert {"iou_crack", "binary_iou", "peak_rss_mb", "predict_images_per_s", "seed"} <= set(lines[0])
    table = (out / "table.md").read_text()
    assert "| U-Net (smp, encoder fine-tuned) on human masks | no boxes | human masks |" in table
    assert "median s/epoch" in table and "Mean over" not in table
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
    # Without --epochs/--size a benchmark trains with train's defaults (12 epochs at 320), not TINY's.
    with pytest.raises(DataError, match=r"\(epochs, size differ"):
        benchmark(data, out, **{k: v for k, v in TINY.items() if k not in ("epochs", "size")})
    for change, key in (
        ({"seeds": (0, 1)}, "seeds"),
        ({"rounds": 2}, "rounds"),
        ({"rows": ("student",)}, "rows"),
    ):
        with pytest.raises(DataError, match=key):
            benchmark(data, out, **{**TINY, **change})
    done = run_cli(
        "benchmark", data, "--out", out, "--teachers", "box", "--epochs", 1, "--size", 32, "--rounds", 1
    )
    assert done.returncode == 2 and "teachers" in done.stderr and str(out) in done.stderr


def test_bad_settings_are_refused_before_any_work(tmp_path: Path, data: Path, run_cli) -> None:
    out = tmp_path / "b"
    done = run_cli("benchmark", data, "--out", out, "--set", "lr=oops")
    assert done.returncode == 2 and "lr" in done.stderr and not out.exists()
    done = run_cli("benchmark", data, "--out", out, "--rows", "student,nope")
    assert (
        done.returncode == 2 and "nope" in done.stderr and "mean-teacher" in done.stderr and not out.exists()
    )
    done = run_cli("benchmark", data, "--out", out, "--seeds", "0,x")
    assert done.returncode == 2 and "--seeds" in done.stderr and not out.exists()
    done = run_cli("benchmark", data, "--out", out, "--set", "seed=3")
    assert done.returncode == 2 and "--seeds" in done.stderr and not out.exists()

    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    victim = next(r for r in load_annotations(copy) if r.instances).file_name
    image = copy / "images" / victim
    image.write_bytes(image.read_bytes()[:300])  # truncated: found only by decoding, before any labelling
    done = run_cli("benchmark", copy, "--out", out)
    assert done.returncode == 2 and victim in done.stderr and not out.exists()


# ----------------------------------------------------------------------------------------------------
# seeds and rounds


def test_rows_pull_in_the_rounds_they_need(rounds) -> None:
    _, _, output = rounds
    assert [r.key for r in output.rows] == [
        "teacher:box",
        "refined-round1",
        "refined-round2",
        "student",
        "student-round2",
    ]
    by = {r.key: r for r in output.rows}
    assert by["student-round2"].trained_on == "refined: round 1"
    assert (
        by["refined-round2"].trained_on == "refined: round 1"
        and by["refined-round1"].trained_on == "teacher: box"
    )
    assert all(r.seeds == [0, 1] for r in output.rows[1:]) and output.rows[0].seeds == [None]


def test_each_seed_trains_every_row_on_the_one_split_and_cache(rounds) -> None:
    data, out, _ = rounds
    split = (out / "splits.json").read_text()
    losses = {}
    for seed in (0, 1):
        for key in ("student", "student-round2"):
            run = out / "runs" / key / f"seed{seed}"
            assert _config(run)["seed"] == seed
            assert (run / "splits.json").read_text() == split  # only training varies with the seed
            assert not (run / "cache").exists()  # the shared cache, not one per run
        with open(out / "runs" / "student" / f"seed{seed}" / "metrics.csv", newline="") as fh:
            losses[seed] = [r["train_loss"] for r in csv.DictReader(fh) if r.get("train_loss")]
    assert losses[0] and losses[0] != losses[1]
    _assert_cache_built_once(out, student="student")
    # Round k's student trains on round k-1's store made by the run of the same seed; every store of a
    # round covers the whole data set (train and val images need masks too).
    images = {r.file_name for r in load_annotations(data).images}
    for seed in (0, 1):
        provenance = json.loads((out / "runs" / "student-round2" / f"seed{seed}" / "run.json").read_text())
        assert provenance["pseudo"] == str((out / "refined" / "refined-round1" / f"seed{seed}").resolve())
        for k in (1, 2):
            store = out / "refined" / f"refined-round{k}" / f"seed{seed}"
            assert {r.file_name for r in load_annotations(store / "pseudo.json", "coco").images} == images
            run = "student" if k == 1 else "student-round2"
            meta = json.loads((store / "store.json").read_text())["config"]
            assert meta["run"] == str((out / "runs" / run / f"seed{seed}").resolve())


def test_seeds_are_reported_as_mean_and_range_and_kept_one_by_one(rounds) -> None:
    _, out, output = rounds
    doc = json.loads((out / "results.json").read_text())
    assert doc["settings"]["seeds"] == [0, 1] and doc["settings"]["rounds"] == 2
    assert doc["settings"]["rows"] == ["refined-round1", "refined-round2", "student", "student-round2"]
    rows = {r["key"]: r for r in doc["rows"]}
    student = rows["student"]
    values = [s["binary_iou"] for s in student["seeds"]]
    assert [s["seed"] for s in student["seeds"]] == [0, 1]
    assert student["binary_iou"] == pytest.approx(sum(values) / 2)
    assert student["spread"]["binary_iou"] == pytest.approx([min(values), max(values)])
    table = (out / "table.md").read_text()
    assert table.startswith("Mean over training seeds 0, 1")
    line = next(t for t in table.splitlines() if t.startswith("| student (full) |"))
    assert f"| {format_spread(values)} |" in line
    with open(out / "results.csv", newline="") as fh:
        lines = [r for r in csv.DictReader(fh) if r["key"] == "student"]
    assert [r["seed"] for r in lines] == ["0", "1", "mean"]
    assert [float(r["binary_iou"]) for r in lines[:2]] == pytest.approx(values)
    # Comparisons: one per seed, then mean and range; rows left out by --rows compare to nothing.
    per_seed = doc["comparisons_per_seed"]
    gains = [per_seed[s]["student_round_gain_binary_iou"] for s in ("0", "1")]
    assert doc["comparisons"]["student_round_gain_binary_iou"] == pytest.approx(sum(gains) / 2)
    assert doc["comparisons_spread"]["student_round_gain_binary_iou"] == pytest.approx(
        [min(gains), max(gains)]
    )
    assert doc["comparisons"]["round_gain_binary_iou"] == pytest.approx(
        rows["refined-round2"]["binary_iou"] - rows["refined-round1"]["binary_iou"]
    )
    assert doc["comparisons"]["mean_teacher_gain_binary_iou"] is None
    assert output.comparisons == doc["comparisons"]
    assert "Mean over seeds (min-max)" in (out / "report.html").read_text()


def test_a_second_call_reuses_every_seed_and_round(rounds) -> None:
    data, out, first = rounds
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.done.json")}
    assert len(stamps) == 1 + 2 * 6  # the teacher; per seed two runs, their predictions, two stores
    again = benchmark(data, out, **ROUNDS)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.done.json")} == stamps
    assert [r.to_dict()["seeds"] for r in again.rows] == [r.to_dict()["seeds"] for r in first.rows]
