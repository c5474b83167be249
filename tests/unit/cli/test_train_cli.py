"""``weakseg train`` from the command line on a tiny synthetic run."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

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
    # Issue 11: the plan, one line per epoch numbered from 1, and none of Lightning's noise.
    console = " ".join((result.stdout + result.stderr).split())
    assert re.search(r"train \d+ images", console) and "epoch 1/1 | train loss" in console
    for noise in ("GPU available", "litlogger", "eval mode", "deprecated", "Epoch 0", "Warning"):
        assert noise not in console, noise
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


def _official_layout(root: Path, n_train: int = 10, n_test: int = 4) -> None:
    """``images/{training,test}`` + ``annotations/{training,test}`` mask PNGs, as many public sets ship."""
    rng = np.random.default_rng(0)
    for split, n in (("training", n_train), ("test", n_test)):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i in range(n):
            image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            mask = np.zeros((64, 64), dtype=np.uint8)
            if i % 2 == 0:
                mask[20:30, 10:40] = 1
                image[20:30, 10:40] = 0
            Image.fromarray(image).save(root / "images" / split / f"{split}_{i}.png")
            Image.fromarray(mask).save(root / "annotations" / split / f"{split}_{i}.png")
    (root / "classes.txt").write_text("scratch\n")


def test_train_keeps_the_datasets_own_test_split(tmp_path: Path) -> None:
    """Issue 11: the official test images all land in the test split, none in train; val comes from
    training; doctor says so before any work, and the run records where its split came from."""
    data = tmp_path / "data"
    _official_layout(data)
    doctor = subprocess.run(
        [sys.executable, "-m", "weakseg", "doctor", str(data), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert doctor.returncode == 0, doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["splits"] == {"train": 10, "test": 4}
    assert report["split_source"] == "declared by the dataset; val carved from train (seeded)"
    args = ["train", str(data), "--pseudo", str(data), "--out", str(tmp_path / "run")]
    args += ["--epochs", "1", "--size", "64", "--batch-size", "4"]
    result = subprocess.run(
        [sys.executable, "-m", "weakseg", *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "run" / "splits.json").read_text())
    by_split = {s: sorted(n for n, v in doc["splits"].items() if v == s) for s in ("train", "val", "test")}
    assert by_split["test"] == [f"test/test_{i}.png" for i in range(4)]
    assert by_split["val"] and all(n.startswith("training/") for n in by_split["train"] + by_split["val"])
    assert doc["source"] == "declared by the dataset (val carved from train, seeded)"


def _synthetic_run_inputs(tmp_path: Path) -> tuple[Path, Path]:
    generate_synthetic(tmp_path / "data", n_images=10, size=(64, 64), seed=6)
    pseudo_label(tmp_path / "data", "box", tmp_path / "store")
    return tmp_path / "data", tmp_path / "store"


def test_ctrl_c_exits_130_with_the_resume_command_and_keeps_finished_epochs(tmp_path: Path) -> None:
    data, store = _synthetic_run_inputs(tmp_path)
    run = tmp_path / "run"
    args = ["train", str(data), "--pseudo", str(store), "--out", str(run), "--epochs", "200", "--size", "64"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "weakseg", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("epoch 2/200"):
            proc.send_signal(signal.SIGINT)
            break
    rest, _ = proc.communicate(timeout=120)
    output = " ".join("".join([*seen, rest]).split())
    assert proc.returncode == 130, output
    assert f"continue with: weakseg train {data} --pseudo {store} --out {run} --resume" in output
    epochs = {row["epoch"] for row in csv.DictReader((run / "metrics.csv").open())}
    assert {"0", "1"} <= epochs
    assert (run / "weights" / "last.ckpt").is_file()


def test_a_run_that_fails_on_its_inputs_leaves_no_folder(tmp_path: Path) -> None:
    data, store = _synthetic_run_inputs(tmp_path)
    (tmp_path / "splits.csv").write_text("nothing.png,train\n")
    args = ["train", str(data), "--pseudo", str(store), "--out", str(tmp_path / "run")]
    result = subprocess.run(
        [sys.executable, "-m", "weakseg", *args, "--splits", str(tmp_path / "splits.csv")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "are not in the split file" in result.stderr
    assert not (tmp_path / "run").exists()


def test_train_classifier_cli_reports_test_scores_and_refuses_to_overwrite(tmp_path: Path, run_cli) -> None:
    generate_synthetic(tmp_path / "data", n_images=12, size=(48, 48), seed=7)
    args = ["train-classifier", tmp_path / "data", "--out", tmp_path / "cls", "--epochs", "1", "--size", "32"]
    args += ["--batch-size", "4", "--set", "backbone_weights=null", "--set", "cam_channels=8"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    console = " ".join((result.stdout + result.stderr).split())
    assert "epoch 1/1" in console and "val AUROC" in console
    assert re.search(r"test: \d+ images, accuracy [0-9.]+; AUROC ", console)
    assert (tmp_path / "cls" / "weights" / "best.ckpt").is_file()
    again = run_cli(*args)
    assert again.returncode == 2 and "already holds a trained classifier" in again.stderr
    bad = run_cli("train-classifier", tmp_path / "data", "--out", tmp_path / "c2", "--set", "colour=red")
    assert bad.returncode != 0 and "colour" in bad.stderr and not (tmp_path / "c2").exists()
