"""Training settings: defaults <- YAML file <- command-line options <- key=value overrides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from weakseg.errors import DataError, WeaksegError
from weakseg.training.config import TrainConfig, load_config, parse_overrides


def test_defaults_round_trip_through_yaml(tmp_path: Path) -> None:
    config = TrainConfig()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    assert load_config(path) == config


def test_precedence_file_then_flags_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"epochs": 7, "lr": 0.01, "loss": {"tau": 0.8}, "decoder": {"width": 64}}))
    overrides = ["lr=0.002", "decoder.use_detail=false", "decoder.output_stride=4", "size=320"]
    config = load_config(path, overrides, {"epochs": 9})
    assert config.epochs == 9  # the flag beats the file
    assert config.lr == 0.002  # the override beats the file
    assert config.loss.tau == 0.8 and config.loss.w_bin == 0.5  # untouched nested keys keep defaults
    assert config.decoder.width == 64 and config.decoder.use_detail is False
    assert config.size == (320, 320)  # one number for a square size


def test_overrides_parse_yaml_values() -> None:
    assert parse_overrides(["loss.tau=null", "flips=[none]", "lr=1e-3", "size=[128, 96]"]) == {
        "loss": {"tau": None},
        "flips": ["none"],
        "lr": "1e-3",  # YAML 1.1 reads it as a string; the config turns it into a number
        "size": [128, 96],
    }
    config = load_config(
        None, ["loss.tau=null", "flips=[none]", "size=[128, 96]", "lr=1e-3", "ema_decay=0.99"]
    )
    assert config.lr == 1e-3
    assert config.loss.tau is None and config.flips == ("none",) and config.size == (128, 96)
    assert config.ema_decay == 0.99


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("epoch=3", "unknown setting(s) epoch"),
        ("loss.tua=0.5", "config.loss: unknown setting(s) tua"),
        ("epochs=three", "config.epochs: expected an integer"),
        ("lr=true", "config.lr: expected a number"),
        ("size=[1, 2, 3]", "expected 2 values"),
        ("decoder.use_detail=maybe", "expected true or false"),
        ("monitor=loss", "monitor must be one of"),
        ("decoder.upsample_kernel=2", "decoder.upsample_kernel must be 1 or 3"),
        ("epochs", "expected key=value"),
    ],
)
def test_bad_settings_are_named(override: str, message: str) -> None:
    with pytest.raises(WeaksegError, match=re.escape(message)):
        load_config(None, [override])


def test_bad_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(DataError, match=re.escape("nope.yaml: does not exist")):
        load_config(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1\n")
    with pytest.raises(DataError, match=re.escape("bad.yaml: is not valid YAML")):
        load_config(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("epochs: many\n")
    with pytest.raises(DataError, match=re.escape("wrong.yaml: config.epochs: expected an integer")):
        load_config(wrong)


def test_a_runs_file_without_later_settings_reads_as_the_run_was_trained(tmp_path: Path) -> None:
    """An older run's config.yaml lacks the settings added since: it was trained squashed, at stride 4
    and without the class Dice, so it must rebuild that network, while a user's own YAML without them
    gets today's defaults."""
    values = TrainConfig().to_dict()
    del values["resize"], values["decoder"]["output_stride"], values["loss"]["fine_dice_weight"]
    del values["decoder"]["upsample_kernel"], values["negative_ratio"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    old = load_config(path, run_file=True)
    assert (old.resize, old.decoder.output_stride, old.loss.fine_dice_weight) == ("stretch", 4, 0.0)
    assert old.decoder.upsample_kernel == 3 and old.negative_ratio is None
    new = load_config(path)
    assert (new.resize, new.decoder.output_stride, new.loss.fine_dice_weight) == ("letterbox", 2, 1.0)
    assert new.decoder.upsample_kernel == 1 and new.negative_ratio == 0.5
    written = TrainConfig(size=(64, 64)).to_dict()  # a run of today keeps what it wrote
    path.write_text(yaml.safe_dump(written))
    assert load_config(path, run_file=True).to_dict() == written
