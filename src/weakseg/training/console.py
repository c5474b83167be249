"""What a training run tells its user: the plan, the feature cache's progress and one line per epoch.

Lightning's own console output (accelerator lines, logger and model-registry advertisements, the
"modules in eval mode" warning for our frozen backbone, dependency deprecation notes, and a progress
bar that numbers epochs from 0) speaks to Lightning's developers; ``verbose`` keeps it for debugging.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from lightning.pytorch.callbacks import Callback
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

#: Lightning's loggers: their INFO lines ("GPU available: False", tips) are dropped unless verbose.
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
#: Warnings a weakseg user cannot act on (a frozen backbone is in eval mode on purpose; the single
#: data-loading process is chosen; the rest are Lightning's and torch's own deprecations).
NOISE = (
    r"Found \d+ module\(s\) in eval mode",
    r".*does not have many workers",
    r".*is deprecated",
    r".*TracerWarning.*",
    r".*sync_dist=True.*",
)


@contextlib.contextmanager
def quiet_lightning(verbose: bool = False) -> Iterator[None]:
    """Silence Lightning's console noise inside the block (nothing changes with ``verbose``)."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        for pattern in NOISE:
            warnings.filterwarnings("ignore", message=pattern)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


@contextlib.contextmanager
def cache_progress(console: Console | None, what: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar for the feature cache (minutes on a CPU); yields the ``progress(n_done)`` hook."""
    if console is None:
        yield lambda n: None
        return
    started = time.perf_counter()
    if not console.is_terminal:  # a log file: no bar redrawn in place, a line before and after
        console.print(f"{what}: {total} images ...", highlight=False)
        yield lambda n: None
        console.print(f"{what}: done in {_duration(time.perf_counter() - started)}", highlight=False)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)
    console.print(f"{what}: {total} images in {_duration(time.perf_counter() - started)}", highlight=False)


class EpochReport(Callback):
    """One line per finished epoch, numbered from 1, with the val scores and an estimate of the rest."""

    def __init__(self, console: Console, epochs: int, monitor: str) -> None:
        self.console = console
        self.epochs = epochs
        self.monitor = monitor
        self._started = 0.0
        self._durations: list[float] = []

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:  # after its validation
        if not self._started:
            return
        self._durations.append(time.perf_counter() - self._started)
        self._started = 0.0
        done = trainer.current_epoch + 1
        metrics = trainer.callback_metrics
        parts = [f"epoch {done}/{self.epochs}"]
        loss = metrics.get("train_loss")
        if loss is not None:
            parts.append(f"train loss {float(loss):.3f}")
        for key, label in (
            ("val_anomaly_miou", "val anomaly mIoU"),
            ("val_binary_iou", "val binary IoU"),
            ("val_mean_auroc", "val AUROC"),
            ("val_accuracy", "val accuracy"),
        ):
            if key in metrics:
                parts.append(f"{label} {float(metrics[key]):.3f}")
        per_epoch = sorted(self._durations)[len(self._durations) // 2]
        left = per_epoch * (self.epochs - done)
        parts.append(_duration(self._durations[-1]) + (f", about {_duration(left)} left" if left else ""))
        self.console.print(" | ".join(parts), highlight=False)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
