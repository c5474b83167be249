"""StudentModule's training step: a non-finite loss is skipped without touching the weights."""

from __future__ import annotations

from typing import Any

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from weakseg.student.model import DecoderConfig
from weakseg.student.segmenter import create_segmenter
from weakseg.training.module import StudentModule


def tiny_module(**kwargs: Any) -> StudentModule:
    """A lite0 student (random weights, narrow decoder) in a module; one defect class."""
    torch.manual_seed(0)
    model = create_segmenter(
        "student", "lite0", 1, weights=None, decoder=DecoderConfig(width=16, out_channels=16)
    )
    return StudentModule(model, ("defect",), **kwargs)


def tiny_batch(seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.rand(2, 3, 32, 32, generator=g),
        "target": torch.randint(0, 2, (2, 32, 32), generator=g),
        "weights": torch.ones(2, 32, 32),
    }


def nan_at_steps(module: StudentModule, steps: set[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the loss NaN at the given global steps (the rest of the loss is computed as usual)."""
    forward = module.criterion.forward

    def patched(outputs: dict, batch: dict, epoch: int, step: int) -> tuple[torch.Tensor, dict]:
        total, logs = forward(outputs, batch, epoch, step)
        return (total * float("nan") if step in steps else total), logs

    monkeypatch.setattr(module.criterion, "forward", patched)


def trainable(module: StudentModule) -> list[torch.nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # no trainer here
def test_a_non_finite_step_returns_a_zero_loss_that_reaches_every_trainable_parameter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not None: under DDP every rank must run the same backward (its gradient all-reduce)."""
    module = tiny_module()
    nan_at_steps(module, {0}, monkeypatch)
    loss = module.training_step(tiny_batch(), 0)
    assert isinstance(loss, torch.Tensor) and loss.requires_grad
    assert loss.item() == 0.0
    assert module.skipped_steps == 1
    loss.backward()
    params = trainable(module)
    assert params and all(p.grad is not None and not p.grad.any() for p in params)


def test_a_skipped_step_leaves_weights_and_optimiser_state_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """AdamW on all-zero gradients would still move the weights (decay, momentum): no update at all."""
    module = tiny_module(lr=1e-2, weight_decay=0.5, max_epochs=1)
    nan_at_steps(module, {1}, monkeypatch)
    moved: list[bool] = []

    class Watch(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
            self.before = [p.detach().clone() for p in trainable(module)]

        def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
            after = trainable(module)
            moved.append(any(not torch.equal(a, b) for a, b in zip(self.before, after, strict=True)))

    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Watch()],
    )
    batches = [tiny_batch(seed) for seed in range(3)]
    trainer.fit(module, DataLoader(batches, batch_size=None))  # type: ignore[arg-type]
    assert moved == [True, False, True]
    assert module.skipped_steps == 1
    optimiser = trainer.optimizers[0]
    assert all(int(optimiser.state[p]["step"]) == 2 for p in trainable(module))  # two real updates
