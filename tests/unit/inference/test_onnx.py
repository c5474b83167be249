"""ONNX export: PyTorch and onnxruntime agree, and ``predict`` runs the exported file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime  # noqa: F401 - OnnxPredictor imports it lazily; a broken install must fail
import pytest

from weakseg.deploy.onnx import OnnxPredictor, export_onnx
from weakseg.errors import DataError
from weakseg.inference.predictor import Predictor


def test_onnx_and_pytorch_agree_on_any_size(trained, tmp_path: Path) -> None:
    meta = export_onnx(trained.run, tmp_path / "student.onnx")
    assert meta["input"]["size"] == [64, 64] and (tmp_path / "student.json").is_file()
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (56, 72, 3), dtype=np.uint8),
        rng.integers(0, 256, (33, 101), dtype=np.uint8),  # gray, odd size
        rng.integers(0, 256, (130, 90, 3), dtype=np.uint8),
    ]
    torch_probs = Predictor(trained.run).probabilities(images)
    onnx_probs = OnnxPredictor(tmp_path / "student.onnx", batch_size=2).probabilities(images)
    for a, b, image in zip(torch_probs, onnx_probs, images, strict=True):
        assert a.shape == b.shape == (a.shape[0], *image.shape[:2])
        assert np.abs(a - b).max() < 1e-4


def test_predict_runs_the_onnx_file(trained, tmp_path: Path) -> None:
    export_onnx(trained.run, tmp_path / "m.onnx")
    out = tmp_path / "pred"
    cmd = [
        sys.executable,
        "-m",
        "weakseg",
        "predict",
        str(tmp_path / "m.onnx"),
        str(trained.data),
        "--out",
        str(out),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "predictions.json").read_text())
    assert len(doc["images"]) == 12 and "onnx" in doc["weakseg"]["predictor"]


def test_missing_metadata_is_named(trained, tmp_path: Path) -> None:
    export_onnx(trained.run, tmp_path / "m.onnx")
    (tmp_path / "m.json").unlink()
    with pytest.raises(DataError, match=r"m\.json"):
        OnnxPredictor(tmp_path / "m.onnx")


def test_export_cli_refuses_to_overwrite_and_keeps_the_old_spelling(trained, tmp_path: Path, run_cli) -> None:
    model = tmp_path / "m.onnx"
    first = run_cli("export", trained.run, "-o", model)
    assert first.returncode == 0, first.stderr
    assert "TracerWarning" not in first.stderr
    stamp = model.stat().st_mtime_ns
    again = run_cli("export", trained.run, "--out", model)
    assert again.returncode == 2 and "already exists; pass --overwrite" in again.stderr
    assert model.stat().st_mtime_ns == stamp
    old = run_cli("export", trained.run, "--onnx", model, "--overwrite")
    assert old.returncode == 0 and "--onnx FILE is deprecated" in old.stderr
