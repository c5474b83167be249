"""``list``, ``pseudo-label`` and ``evaluate`` from the command line, on the synthetic set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from weakseg.data.synthetic import generate_synthetic


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("syn") / "data"
    generate_synthetic(root, n_images=12, size=(96, 96), seed=5)
    return root


def test_list_teachers(run_cli) -> None:
    result = run_cli("list", "teachers")
    assert result.returncode == 0
    for name in ("box", "grabcut", "contrast", "sam", "fusion"):
        assert name in result.stdout
    result = run_cli("list", "backbones")
    assert result.returncode == 0
    assert "lite0" in result.stdout and "dinov2_vits14" in result.stdout
    assert run_cli("list", "nonsense").returncode == 2


@pytest.mark.parametrize("teacher", ["box", "contrast"])
def test_pseudo_label_then_evaluate(data: Path, tmp_path: Path, teacher: str, run_cli) -> None:
    store = tmp_path / "store"
    result = run_cli("pseudo-label", str(data), "--teacher", teacher, "--out", str(store))
    assert result.returncode == 0, result.stderr
    assert "merged 12 images" in result.stdout
    result = run_cli("evaluate", str(store), "--data", str(data), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    metrics = report["metrics"]
    assert 0.0 < metrics["binary_iou"] <= 1.0
    assert set(metrics["per_class"]) == {"background", "crack", "blob", "scratch", "stain"}
    if teacher == "box":
        assert metrics["binary_recall"] == pytest.approx(1.0)  # a filled box covers its defect
    for name in ("metrics.json", "per_image.csv", "per_class.csv", "worst.png", "report.html"):
        assert (store / "eval" / name).is_file()
    assert f"teacher: {teacher}" in (store / "eval" / "report.html").read_text(encoding="utf-8")
    with Image.open(store / "eval" / "worst.png") as gallery:
        assert gallery.height > 100


def test_fusion_with_options_and_sam_without_checkpoint(data: Path, tmp_path: Path, run_cli) -> None:
    result = run_cli(
        "pseudo-label",
        str(data),
        "-t",
        "fusion",
        "--set",
        "members=[box,contrast]",
        "-o",
        str(tmp_path / "f"),
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "f" / "store.json").read_text())
    assert [m["teacher"] for m in meta["config"]["members"]] == ["box", "contrast"]
    result = run_cli(
        "pseudo-label",
        str(data),
        "-t",
        "sam",
        "--checkpoint",
        str(tmp_path / "no.pth"),
        "-o",
        str(tmp_path / "s"),
    )
    assert result.returncode == 2
    assert "SAM checkpoint not found" in result.stderr


def test_evaluate_refuses_a_folder_that_is_not_a_store(data: Path, tmp_path: Path, run_cli) -> None:
    result = run_cli("evaluate", str(tmp_path), str(data))
    assert result.returncode == 2
    assert "is not something weakseg can score" in result.stderr
