"""``weakseg predict`` / ``evaluate RUN`` from the command line, and bad input (exit 2, file named)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def test_predict_cli_folder_with_an_unreadable_image(trained, tmp_path: Path, run_cli) -> None:
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (41, 67, 3), dtype=np.uint8)).save(images / "a.png")
    Image.fromarray(rng.integers(0, 256, (30, 20), dtype=np.uint8)).save(images / "sub" / "b.jpg")
    result = run_cli("predict", trained.run, images, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert np.asarray(Image.open(tmp_path / "out" / "masks" / "a.png")).shape == (41, 67)
    assert np.asarray(Image.open(tmp_path / "out" / "masks" / "sub" / "b.png")).shape == (30, 20)
    assert (tmp_path / "out" / "overlays" / "sub" / "b.jpg").is_file()
    (images / "broken.png").write_bytes(b"not an image")
    result = run_cli("predict", trained.run, images, "--out", tmp_path / "out2")
    assert result.returncode == 2
    assert "broken.png" in result.stderr
    doc = json.loads((tmp_path / "out2" / "predictions.json").read_text())
    assert len(doc["images"]) == 2 and doc["weakseg"]["failed"][0]["path"].endswith("broken.png")


def test_bad_paths_exit_2_naming_the_file(trained, tmp_path: Path, run_cli) -> None:
    missing = tmp_path / "no_such_images"
    result = run_cli("predict", trained.run, missing, "--out", tmp_path / "out")
    assert result.returncode == 2 and "no_such_images" in result.stderr and "does not exist" in result.stderr
    result = run_cli("predict", trained.data, trained.data, "--out", tmp_path / "out")
    assert result.returncode == 2 and "not a training run folder" in result.stderr
    assert not (tmp_path / "out").exists()
    result = run_cli("refine", trained.run, trained.data, "--out", tmp_path / "store", "--probability", "max")
    assert result.returncode == 2 and "probability must be one of" in result.stderr
    assert not (tmp_path / "store").exists()


def test_evaluate_run_cli_json(trained, tmp_path: Path, run_cli) -> None:
    result = run_cli("evaluate", trained.run, "--data", trained.data, "--out", tmp_path / "eval", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert {"student", "teacher", "gain"} <= set(doc)
    assert doc["student"]["metrics"]["binary_iou"] is not None
