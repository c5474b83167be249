"""``weakseg train`` from the command line on a tiny synthetic run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from weakseg.data.synthetic import generate_synthetic
from weakseg.pseudolabel.runner import pseudo_label


def test_train_cli(tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "data", n_images=10, size=(64, 64), seed=6)
    pseudo_label(tmp_path / "data", "box", tmp_path / "store")
    args = [
        "train",
        str(tmp_path / "data"),
        "--pseudo",
        str(tmp_path / "store"),
        "--out",
        str(tmp_path / "run"),
    ]
    args += ["--epochs", "1", "--size", "64", "--batch-size", "4"]
    result = subprocess.run(
        [sys.executable, "-m", "weakseg", *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "weights" / "last.ckpt").is_file()
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "weakseg",
            "train",
            str(tmp_path / "data"),
            "--pseudo",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "r2"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
