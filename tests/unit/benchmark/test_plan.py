"""The benchmark's plan (rows, rounds, ``--rows`` dependencies, seeds) and its aggregation over seeds,
checked directly: no training, no data."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest

from weakseg.benchmark.plan import (
    DEFAULT_ROUNDS,
    REFINES,
    RUNS,
    BenchmarkSettings,
    make_plan,
    parse_rows,
    parse_seeds,
)
from weakseg.benchmark.runner import (
    Row,
    Score,
    _comparisons,
    _csv,
    _fmt_comparison,
    aggregate_comparisons,
    format_spread,
    metrics_table,
    summarize,
)
from weakseg.errors import WeaksegError
from weakseg.evaluation.scoring import EvaluationResult
from weakseg.training.config import load_config

# ----------------------------------------------------------------------------------------------------
# rows, rounds and dependencies


def test_every_row_and_the_rounds_are_planned() -> None:
    plan = make_plan(3)
    assert plan.keys == (
        "refined-student",
        "refined-student-fixed",
        "refined-student-fused",
        "refined-supervised",
        "refined-round1",
        "refined-round2",
        "refined-round3",
        "student",
        "mean-teacher",
        "no-self-correction",
        "no-binary-head",
        "no-detail-branch",
        "unet",
        "unet-finetuned",
        "student-round2",
        "student-round3",
        "supervised",
        "unet-finetuned-supervised",
    )
    # Round 1 is the student refining the whole data set; round k trains on round k-1's store.
    assert plan.refine("refined-round1").run == "student"
    assert plan.refine("refined-round3").run == "student-round3"
    assert all(plan.refine(f"refined-round{k}").whole_dataset for k in (1, 2, 3))
    assert plan.run("student-round2").masks == "refined-round1"
    assert plan.run("student-round3").masks == "refined-round2"
    assert plan.labels["refined-round2"] == "refined: round 2"


def test_one_round_is_the_benchmark_of_before() -> None:
    plan = make_plan(1)
    assert plan.runs == RUNS and plan.refines == REFINES
    assert not any("round" in key for key in plan.keys)


def test_rows_pull_in_what_they_need_and_nothing_else() -> None:
    plan = make_plan(3, ["refined-round2"])
    assert plan.keys == ("refined-round1", "refined-round2", "student", "student-round2")
    assert make_plan(3, ["refined-student-fused"]).keys == ("refined-student-fused", "student")
    assert make_plan(3, ["refined-supervised"]).keys == ("refined-supervised", "supervised")
    assert make_plan(1, ["mean-teacher", "supervised"]).keys == ("mean-teacher", "supervised")


@pytest.mark.parametrize(
    ("rounds", "rows", "message"),
    [
        (3, ["student", "nope"], "unknown row.*nope.*known.*mean-teacher"),
        (2, ["refined-round3"], "unknown row.*refined-round3.*--rounds 2.*refined-round2"),
        (1, ["student-round2"], "unknown row.*student-round2"),
        (3, [], "at least one row"),
        (0, None, "--rounds"),
    ],
)
def test_unknown_rows_and_bad_rounds_are_refused(rounds: int, rows: list[str] | None, message: str) -> None:
    with pytest.raises(WeaksegError, match=message):
        make_plan(rounds, rows)


def test_every_run_is_a_valid_training_config_with_its_own_settings() -> None:
    settings = BenchmarkSettings("data", ("box",), seed=4)
    configs = {s.key: load_config(None, [*settings.train_args(7), *s.overrides]) for s in make_plan(3).runs}
    assert {c.seed for c in configs.values()} == {7}
    assert load_config(None, settings.train_args()).seed == 4  # no training seed: the split's
    assert configs["mean-teacher"].mean_teacher.enabled and not configs["student"].mean_teacher.enabled
    for key in ("unet-finetuned", "unet-finetuned-supervised"):
        c = configs[key]
        assert (c.model, c.backbone_mode, c.feature_cache, c.loss.tau) == ("unet", "all", False, None)
    assert configs["unet"].backbone_mode == "frozen" and configs["unet"].feature_cache
    assert configs["supervised"].val_masks == configs["unet-finetuned-supervised"].val_masks == "gt"
    assert configs["student"].val_masks == "pseudo"
    supervised = {s.key for s in make_plan(3).runs if s.supervised}
    assert supervised == {"supervised", "unet-finetuned-supervised"}
    fixed = make_plan(1).refine("refined-student-fixed")
    default = make_plan(1).refine("refined-student")
    assert (fixed.threshold, fixed.tta) == (0.5, False) and (default.threshold, default.tta) == ("box", True)


def test_seeds_and_rows_are_parsed_from_the_command_line() -> None:
    assert parse_seeds(None, 5) == (5,) and parse_seeds(" ", 5) == (5,)
    assert parse_seeds("0, 1,2", 5) == (0, 1, 2)
    with pytest.raises(WeaksegError, match="'x' is not an integer"):
        parse_seeds("0,x", 0)
    with pytest.raises(WeaksegError, match="1 is given twice"):
        parse_seeds("1,1", 0)
    assert parse_rows(None) is None and parse_rows("") is None
    assert parse_rows("student, unet,student,") == ("student", "unet")


# ----------------------------------------------------------------------------------------------------
# aggregation over seeds


def test_summarize_and_format_spread() -> None:
    assert summarize([0.640, 0.661, 0.655]) == pytest.approx((0.652, 0.640, 0.661))
    assert format_spread([0.640, 0.661, 0.655]) == "0.652 (0.640-0.661)"
    assert format_spread([0.5]) == "0.500"  # one seed: no range
    assert format_spread([0.5, None]) == "0.500"  # an undefined value is left out of the mean
    assert summarize([None, None]) == (None, None, None) and format_spread([None]) == "-"
    assert format_spread([-0.02, 0.004]) == "-0.008 (-0.020 to 0.004)"
    assert format_spread([-0.0001, 0.002]) == "0.001 (0.000-0.002)"  # no "-0.000"


def _result(binary_iou: float | None, *, recall: float = 0.5, crack: float | None = 0.3) -> EvaluationResult:
    metrics: dict[str, Any] = {
        "binary_iou": binary_iou,
        "binary_recall": recall,
        "binary_precision": 0.5,
        "miou": 0.4,
        "anomaly_miou": None if binary_iou is None else binary_iou / 2,
        "anomaly_f1": 0.6,
        "per_class": {"background": {"iou": 0.9}, "crack": {"iou": crack}},
    }
    return EvaluationResult(metrics, np.zeros((2, 2), np.int64), ("background", "crack"), [], [])


def _row(key: str, values: dict[int | None, float | None], timing: dict[str, float] | None = None) -> Row:
    scores = [Score(s, _result(v), dict(timing or {}), None) for s, v in values.items()]  # type: ignore[arg-type]
    return Row(key, key.replace("-", " "), "no boxes", "teacher: box", scores)


@pytest.fixture
def rows() -> list[Row]:
    return [
        _row("teacher:box", {None: 0.30}),
        _row("refined-student", {0: 0.50, 1: 0.54, 2: 0.52}),
        _row("refined-student-fixed", {0: 0.45, 1: 0.46, 2: 0.47}),
        _row("student", {0: 0.640, 1: 0.661, 2: 0.655}, {"predict_images_per_s": 10.0}),
        _row("mean-teacher", {0: 0.650, 1: 0.651, 2: 0.675}),
        _row("supervised", {0: 0.80, 1: 0.80, 2: 0.80}),
        _row("unet", {0: 0.60, 1: 0.61, 2: 0.62}, {"predict_images_per_s": 5.0}),
    ]


def test_comparisons_are_per_seed_then_averaged_with_their_spread(rows: list[Row]) -> None:
    per_seed = [_comparisons(rows, s, "box") for s in (0, 1, 2)]
    assert [c["mean_teacher_gain_binary_iou"] for c in per_seed] == pytest.approx([0.010, -0.010, 0.020])
    means, spread = aggregate_comparisons(per_seed)
    assert means["mean_teacher_gain_binary_iou"] == pytest.approx(0.02 / 3)
    assert spread["mean_teacher_gain_binary_iou"] == pytest.approx([-0.010, 0.020])
    text = _fmt_comparison(means["mean_teacher_gain_binary_iou"], spread["mean_teacher_gain_binary_iou"])
    assert text == "0.007 (-0.010 to 0.020)"
    # The teacher has no training seed: it stands for every seed.
    assert means["refined_minus_best_teacher_binary_iou"] == pytest.approx(0.22)
    assert means["refined_minus_teacher_binary_iou"]["box"] == pytest.approx(0.22)
    assert spread["refined_minus_teacher_binary_iou"]["box"] == pytest.approx([0.20, 0.24])
    assert means["box_aware_refine_gain_binary_iou"] == pytest.approx(0.06)
    assert means["refined_beats_every_teacher"] is True and spread["refined_beats_every_teacher"] is None
    assert means["student_over_supervised_binary_iou"] == pytest.approx(0.652 / 0.8)
    assert means["student_over_supervised_anomaly_miou"] == pytest.approx(0.652 / 0.8)
    assert means["student_minus_unet_binary_iou"] == pytest.approx(0.042)
    assert means["student_over_unet_predict_speed"] == pytest.approx(2.0)
    assert means["teacher"] == "box"
    # Rows this benchmark does not have (--rows) compare to nothing.
    for key in (
        "student_minus_unet_finetuned_binary_iou",
        "supervised_minus_unet_finetuned_supervised_binary_iou",
    ):
        assert means[key] is None and spread[key] is None
    assert means["round_gain_binary_iou"] is None and means["self_correction_recall_gain"] is None


def test_one_seed_has_no_spread(rows: list[Row]) -> None:
    means, spread = aggregate_comparisons([_comparisons(rows, 1, "box")])
    assert means["mean_teacher_gain_binary_iou"] == pytest.approx(-0.010)
    assert spread["mean_teacher_gain_binary_iou"] is None
    assert means["refined_beats_every_teacher"] is True
    beaten = aggregate_comparisons([{"x": True}, {"x": False}])[0]["x"]
    assert beaten is False  # a yes/no holds only if every seed says yes


def test_table_json_and_csv_report_mean_range_and_every_seed(rows: list[Row]) -> None:
    table = metrics_table(rows, ["crack"])
    assert table.startswith("Mean over training seeds 0, 1, 2 (min-max in brackets)")
    student = next(line for line in table.splitlines() if line.startswith("| student |"))
    assert "| 0.652 (0.640-0.661) |" in student  # binary IoU
    assert "| 0.300 |" in table.splitlines()[4]  # the teacher row: one value, no range
    doc = rows[3].to_dict()
    assert doc["binary_iou"] == pytest.approx(0.652)
    assert doc["spread"]["binary_iou"] == pytest.approx([0.640, 0.661])
    assert [s["seed"] for s in doc["seeds"]] == [0, 1, 2]
    assert [s["binary_iou"] for s in doc["seeds"]] == [0.640, 0.661, 0.655]
    assert "spread" not in rows[0].to_dict()
    lines = _csv(rows, ["crack"]).splitlines()
    header = lines[0].split(",")
    student_lines = [dict(zip(header, line.split(","), strict=True)) for line in lines if ",student," in line]
    assert [line["seed"] for line in student_lines] == ["0", "1", "2", "mean"]
    assert float(student_lines[-1]["binary_iou"]) == pytest.approx(0.652)
    assert float(student_lines[1]["binary_iou"]) == pytest.approx(0.661)
    one_seed = metrics_table([rows[0]], ["crack"])
    assert not one_seed.startswith("Mean over")


def test_the_command_line_names_every_row_and_the_default_rounds() -> None:
    from weakseg.cli.app import benchmark

    doc = " ".join((benchmark.__doc__ or "").split())
    assert all(key in doc for key in make_plan(1).keys)
    assert "refined-round1..N and student-round2..N" in doc
    assert inspect.signature(benchmark).parameters["rounds"].default.default == DEFAULT_ROUNDS
