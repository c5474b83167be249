"""One CLI grammar (issue 11): INPUT... positional, --out/-o, --set KEY=VALUE, every option documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import typer.main

from weakseg.cli.app import app
from weakseg.data.synthetic import generate_synthetic
from weakseg.pseudolabel.runner import pseudo_label
from weakseg.training.config import TrainConfig


def _options():
    for name, command in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        for param in command.params:
            if param.param_type_name == "option" and not param.hidden:
                yield name, param


def test_every_option_has_help_and_says_its_default() -> None:
    undocumented = [
        (name, p.opts)
        for name, p in _options()
        if not p.help
        or (
            p.default is None
            and not p.is_flag
            and not p.required
            and not re.search(r"\b(default|required)\b", p.help, re.IGNORECASE)
        )
    ]
    assert undocumented == []


def test_every_verb_writes_to_out_and_takes_settings_as_set() -> None:
    opts = {name: {o for _, p in _options() if _ == name for o in p.opts} for name, _ in _options()}
    for verb in (
        "convert",
        "pseudo-label",
        "evaluate",
        "predict",
        "refine",
        "train",
        "export",
        "benchmark",
        "demo",
    ):
        assert {"--out", "-o"} <= opts[verb], verb
    for verb in ("pseudo-label", "train", "benchmark"):
        assert "--set" in opts[verb], verb


def test_train_help_states_the_real_defaults() -> None:
    helps = {p.opts[0]: p.help for name, p in _options() if name == "train"}
    config = TrainConfig()
    assert f"Default: {config.epochs}." in helps["--epochs"]
    assert f"Default: {config.size[0]}." in helps["--size"]
    assert f"Default: {config.batch_size}." in helps["--batch-size"]
    assert f"Default: {config.lr}." in helps["--lr"]
    assert f"Default: {config.seed}." in helps["--seed"]
    assert f"Default: {config.backbone}." in helps["--backbone"]


def test_root_help_does_not_truncate_and_list_shows_extras() -> None:
    env = {**os.environ, "COLUMNS": "80"}
    result = subprocess.run(
        [sys.executable, "-m", "weakseg", "--help"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0
    shown = " ".join(result.stdout.split())
    for name, command in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        assert f"{name} {command.short_help}" in shown, name
    listing = subprocess.run(
        [sys.executable, "-m", "weakseg", "list", "teachers"], capture_output=True, text=True
    )
    assert "extra [sam]" in " ".join(listing.stdout.split())


def test_old_spellings_still_work_with_a_note(tmp_path: Path, run_cli) -> None:
    generate_synthetic(tmp_path / "data", n_images=6, size=(48, 48), seed=1)
    pseudo_label(tmp_path / "data", "box", tmp_path / "store")
    new = run_cli("evaluate", tmp_path / "store", tmp_path / "data", "-o", tmp_path / "e1", "--json")
    old = run_cli(
        "evaluate", tmp_path / "store", "--data", tmp_path / "data", "-o", tmp_path / "e2", "--json"
    )
    assert new.returncode == old.returncode == 0, new.stderr + old.stderr
    assert (
        new.stdout == old.stdout
        and "--data DATA is deprecated" in old.stderr
        and "deprecated" not in new.stderr
    )
    twice = run_cli("evaluate", tmp_path / "store", tmp_path / "data", "--data", tmp_path / "store")
    assert twice.returncode == 2 and "give DATA (after TARGET) once" in twice.stderr
    neither = run_cli("evaluate", tmp_path / "store")
    assert neither.returncode == 2 and "missing DATA" in neither.stderr
    converted = run_cli("convert", tmp_path / "data", tmp_path / "c1", "--to", "coco")
    assert converted.returncode == 0 and "OUT is deprecated" in converted.stderr
    assert (tmp_path / "c1" / "annotations.json").is_file()
    converted = run_cli("convert", tmp_path / "data", "-o", tmp_path / "c2", "--to", "coco")
    assert converted.returncode == 0 and (tmp_path / "c2" / "annotations.json").is_file()


def test_a_folder_of_images_without_annotations_says_so(tmp_path: Path, run_cli) -> None:
    generate_synthetic(tmp_path / "data", n_images=3, size=(32, 32), seed=1)
    (tmp_path / "bare").mkdir()
    for image in sorted((tmp_path / "data").rglob("*.png"))[:3]:
        (tmp_path / "bare" / image.name).write_bytes(image.read_bytes())
    result = run_cli("doctor", tmp_path / "bare")
    assert result.returncode == 2 and "no annotations found for its 3 images" in " ".join(
        result.stderr.split()
    )


def test_format_detection_order_does_not_depend_on_imports() -> None:
    code = (
        "import weakseg.annotations.readers.{} as _\n"
        "from weakseg.annotations.readers import reader_names\n"
        "print(reader_names())"
    )
    orders = {
        subprocess.run([sys.executable, "-c", code.format(m)], capture_output=True, text=True).stdout
        for m in ("yolo", "tags", "coco", "voc")
    }
    assert len(orders) == 1
