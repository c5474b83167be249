"""The speed scripts under benchmarks/ still run against today's API (the package never imports them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_inference_benchmark_runs_on_a_tiny_input() -> None:
    args = ["--size", "64", "--batch", "1", "--batches", "1", "--repeats", "1", "--threads", "1"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "inference.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "onnxruntime" in done.stdout
