"""The mean teacher: EMA update and ramp, its place in the module and the checkpoint, and a tiny run."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from weakseg.data.synthetic import generate_synthetic
from weakseg.inference.predictor import Predictor, load_student
from weakseg.inference.run import load_run
from weakseg.pseudolabel.runner import pseudo_label
from weakseg.student.model import DecoderConfig
from weakseg.student.segmenter import create_segmenter
from weakseg.training.config import load_config
from weakseg.training.mean_teacher import (
    MeanTeacher,
    MeanTeacherConfig,
    ema_momentum,
    ema_update,
    frozen_copy,
)
from weakseg.training.module import StudentModule
from weakseg.training.train import TrainConfig, train

MT_LOGS = ("loss_mt_pix", "loss_mt_aff", "mt_confidence")


def test_momentum_ramps_from_a_copy_to_the_decay() -> None:
    assert ema_momentum(0, 0.99) == 0.0  # the first update copies the student
    assert ema_momentum(1, 0.99) == pytest.approx(0.5)
    assert ema_momentum(9, 0.99) == pytest.approx(0.9)
    assert ema_momentum(99, 0.99) == pytest.approx(0.99)
    assert ema_momentum(10_000, 0.99) == 0.99
    assert ema_momentum(10_000, 0.999) == 0.999


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Linear(3, 3)
        self.head = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)
        self.frozen.requires_grad_(False)


def test_ema_update_averages_trainable_parameters_only() -> None:
    torch.manual_seed(0)
    student = Tiny()
    teacher = frozen_copy(student)
    assert teacher.frozen.weight is student.frozen.weight  # shared, not copied
    assert teacher.head.weight is not student.head.weight
    assert not any(p.requires_grad for p in teacher.parameters())
    old = teacher.head.weight.detach().clone()
    with torch.no_grad():
        student.head.weight.add_(1.0)
        student.norm.running_mean.fill_(5.0)
    ema_update(teacher, student, 0.75)
    assert torch.allclose(teacher.head.weight, 0.75 * old + 0.25 * student.head.weight)
    assert torch.equal(teacher.norm.running_mean, torch.zeros(2))  # buffers are not averaged
    assert teacher.frozen.weight is student.frozen.weight


def tiny_student() -> Any:
    torch.manual_seed(0)
    return create_segmenter(
        "student", "lite0", 1, weights=None, decoder=DecoderConfig(width=16, out_channels=16)
    )


def tiny_batch() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    target[:, 8:16, 8:16] = 1
    return {
        "image": torch.rand(2, 3, 32, 32, generator=g),
        "target": target,
        "weights": torch.ones(2, 32, 32),
        "correctable": torch.ones(2, 32, 32, dtype=torch.bool),
        "boxes": [torch.tensor([[4.0, 4.0, 20.0, 20.0]])] * 2,
    }


def mt_module(**config: Any) -> StudentModule:
    return StudentModule(tiny_student(), ("defect",), mean_teacher=MeanTeacherConfig(enabled=True, **config))


@torch.no_grad()
def half_foreground(model: Any, batch: dict[str, Any]) -> None:
    """Shift the binary head so that about half the box says defect: a teacher copied from this
    random student then has a mask that is neither empty nor the whole box."""
    binary = model(batch["image"])["binary"][:, :, 4:20, 4:20]
    model.binary_head.classifier.bias[1] -= (binary[:, 1] - binary[:, 0]).median()


def test_the_teacher_is_not_trained_and_not_what_the_predictor_loads() -> None:
    module = mt_module()
    teacher = module.mean_teacher
    assert teacher is not None
    optimiser = module.configure_optimizers()["optimizer"]
    in_optimiser = {id(p) for group in optimiser.param_groups for p in group["params"]}
    assert not any(p.requires_grad for p in teacher.parameters())
    assert not in_optimiser & {id(p) for p in teacher.parameters()}
    assert in_optimiser == {id(p) for p in module.model.trainable_parameters()}
    state = module.state_dict()
    assert any(k.startswith("mean_teacher.model.decoder.") for k in state)
    student_keys = {k[len("model.") :] for k in state if k.startswith("model.")}
    assert student_keys == set(module.model.state_dict())
    assert StudentModule(tiny_student(), ("defect",)).mean_teacher is None  # off by default


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # no trainer here
def test_a_step_updates_the_teacher_first_then_adds_its_terms(monkeypatch: pytest.MonkeyPatch) -> None:
    module = mt_module(start_epoch=0, warmup_steps=0)
    teacher = module.mean_teacher
    assert teacher is not None
    with torch.no_grad():
        for p in teacher.model.decoder.parameters():
            p.add_(1.0)  # far from the student: step 0 (m = 0) must copy it back before decoding
    seen: dict[str, Any] = {}
    loss_fn = type(teacher).loss

    def spy(self: MeanTeacher, *args: Any, **kwargs: Any) -> Any:
        seen["same"] = all(
            torch.equal(a, b)
            for a, b in zip(self.model.decoder.parameters(), module.model.decoder.parameters(), strict=True)
        )
        total, logs = loss_fn(self, *args, **kwargs)
        seen["logs"] = logs
        return total, logs

    monkeypatch.setattr(MeanTeacher, "loss", spy)
    without = StudentModule(tiny_student(), ("defect",))
    half_foreground(module.model, tiny_batch())
    half_foreground(without.model, tiny_batch())
    base = without.training_step(tiny_batch(), 0)
    total = module.training_step(tiny_batch(), 0)
    assert seen["same"]
    assert set(MT_LOGS) <= set(seen["logs"]) and seen["logs"]["mt_ramp"] == 1.0
    extra = 0.5 * seen["logs"]["loss_mt_pix"] + 0.1 * seen["logs"]["loss_mt_aff"]
    assert extra > 0
    assert total.item() == pytest.approx(base.item() + extra, rel=1e-5)
    assert teacher.start_step == 0
    total.backward()
    assert all(p.grad is None for p in teacher.parameters())


def test_the_terms_wait_for_start_epoch_and_then_ramp() -> None:
    teacher = MeanTeacher(tiny_student(), MeanTeacherConfig(enabled=True, start_epoch=2, warmup_steps=10))
    batch = tiny_batch()
    features = teacher.model.features(batch["image"])
    outputs = teacher.model.decode(features, batch["image"])
    assert teacher.loss(features, outputs, batch, epoch=1, step=30, ignore_index=255) == (None, {})
    assert teacher.start_step is None
    _, logs = teacher.loss(features, outputs, batch, epoch=2, step=40, ignore_index=255)
    assert teacher.start_step == 40 and logs["mt_ramp"] == 0.0
    _, logs = teacher.loss(features, outputs, batch, epoch=2, step=41, ignore_index=255)
    assert teacher.start_step == 40 and logs["mt_ramp"] == pytest.approx(0.1)
    assert teacher.ramp(45) == 0.5 and teacher.ramp(60) == 1.0
    other = MeanTeacher(tiny_student(), teacher.config)
    other.load_state(teacher.state())
    assert other.start_step == 40


def test_resume_can_switch_the_teacher_on_and_off() -> None:
    """A checkpoint without a teacher gives the new one its student; an unused teacher is dropped."""
    plain = StudentModule(tiny_student(), ("defect",))
    with torch.no_grad():
        for p in plain.model.decoder.parameters():
            p.add_(0.5)
    checkpoint = {"state_dict": plain.state_dict()}
    module = mt_module()
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])  # strict
    assert module.mean_teacher is not None
    for a, b in zip(module.mean_teacher.model.parameters(), plain.model.parameters(), strict=True):
        assert torch.equal(a, b)
    back = {"state_dict": module.state_dict(), "mean_teacher": {"start_step": 3}}
    plain.on_load_checkpoint(back)
    plain.load_state_dict(back["state_dict"])  # strict


# --------------------------------------------------------------------------- tiny runs


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("mean_teacher")
    generate_synthetic(root / "data", n_images=16, size=(64, 64), seed=4)
    pseudo_label(root / "data", "contrast", root / "store")
    return root / "data", root / "store"


def config(epochs: int, enabled: bool = True) -> TrainConfig:
    mt = MeanTeacherConfig(enabled=enabled, start_epoch=1, warmup_steps=2)
    return TrainConfig(epochs=epochs, size=(64, 64), batch_size=4, mean_teacher=mt)


@pytest.fixture(scope="module")
def mt_run(labelled: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    data, store = labelled
    run = tmp_path_factory.mktemp("mt_run") / "run"
    train(data, store, run, config(2))
    return run


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as fh:
        return [r for r in csv.DictReader(fh) if r.get("train_loss")]


def test_a_run_with_the_teacher_logs_its_terms_from_start_epoch(mt_run: Path) -> None:
    by_epoch = {int(r["epoch"]): r for r in rows(mt_run)}
    assert sorted(by_epoch) == [0, 1]
    assert not any(by_epoch[0].get(k) for k in MT_LOGS)  # offline masks only before start_epoch
    for key in MT_LOGS:
        assert np.isfinite(float(by_epoch[1][key])), key
    assert float(by_epoch[1]["loss_mt_pix"]) > 0 and 0 < float(by_epoch[1]["mt_confidence"]) <= 1
    assert load_config(mt_run / "config.yaml").mean_teacher.enabled


def test_a_run_without_the_teacher_logs_no_terms(labelled: tuple[Path, Path], tmp_path: Path) -> None:
    data, store = labelled
    train(data, store, tmp_path / "run", config(1, enabled=False))
    (row,) = rows(tmp_path / "run")
    assert not any(key in row for key in (*MT_LOGS, "mt_ramp"))
    state = torch.load(tmp_path / "run" / "weights" / "last.ckpt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("mean_teacher.") for k in state["state_dict"])


def test_the_predictor_loads_the_student_of_a_mean_teacher_run(mt_run: Path) -> None:
    ckpt = torch.load(mt_run / "weights" / "last.ckpt", map_location="cpu", weights_only=True)
    teacher = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("mean_teacher.model.decoder.")}
    assert teacher and ckpt["mean_teacher"]["start_step"] > 0
    model, _ = load_student(load_run(mt_run), "last")
    for key, value in model.decoder.state_dict().items():
        assert torch.equal(value, ckpt["state_dict"][f"model.decoder.{key}"])
        assert not torch.equal(value, teacher[f"mean_teacher.model.decoder.{key}"])  # not the teacher
    image = np.zeros((40, 48, 3), np.uint8)
    (prob,) = Predictor(mt_run).probabilities([image])
    assert prob.shape == (5, 40, 48)


def test_resume_continues_the_teacher(
    mt_run: Path, labelled: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, store = labelled
    run = Path(shutil.copytree(mt_run, tmp_path / "run"))
    ckpt = torch.load(run / "weights" / "last.ckpt", map_location="cpu", weights_only=True)
    state, step = ckpt["state_dict"], ckpt["global_step"]
    seen: dict[str, Any] = {}
    update = MeanTeacher.update

    def spy(self: MeanTeacher, student: Any, global_step: int) -> float:
        momentum = update(self, student, global_step)
        if "first" not in seen:
            seen["first"] = (global_step, momentum, self.start_step)
            seen["teacher"] = {k: v.detach().clone() for k, v in self.model.decoder.state_dict().items()}
        return momentum

    monkeypatch.setattr(MeanTeacher, "update", spy)
    train(data, store, run, config(3), resume=True)
    first_step, momentum, start_step = seen["first"]
    assert first_step == step and start_step == ckpt["mean_teacher"]["start_step"]
    assert momentum == pytest.approx(ema_momentum(step, 0.99)) and 0 < momentum < 1
    for key, value in seen["teacher"].items():
        expected = (
            momentum * state[f"mean_teacher.model.decoder.{key}"]
            + (1 - momentum) * state[f"model.decoder.{key}"]
        )
        assert torch.allclose(value, expected, atol=1e-6), key
    assert [int(r["epoch"]) for r in rows(run)] == [0, 1, 2]
