"""``train``: a student on pseudo-masks (or on human masks, for the fully supervised ceiling).

The run folder holds everything needed to reproduce and to use the run: ``config.yaml`` (resolved),
``class_map.json``, ``splits.json``, ``metrics.csv`` (Lightning's CSV logger), ``weights/best.ckpt``
and ``weights/last.ckpt``, and the feature cache under ``cache/``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import signal
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback, EarlyStopping, EMAWeightAveraging, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from rich.console import Console
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from weakseg.annotations.readers import load_annotations
from weakseg.annotations.schema import AnnotationSet
from weakseg.annotations.splits import apply_splits, split_source, splits_for
from weakseg.data.samples import SampleConfig, SegmentationSamples
from weakseg.errors import DataError, Interrupted, WeaksegError
from weakseg.pseudolabel.store import PseudoStore, load_pseudo
from weakseg.student.fold import fast_features
from weakseg.student.segmenter import create_segmenter
from weakseg.training.calibrate import calibrate, load_checkpoint_weights
from weakseg.training.config import TrainConfig
from weakseg.training.console import EpochReport, cache_progress, quiet_lightning
from weakseg.training.data import CachedSamples, DatasetEpoch, DefectAwareSampler, collate
from weakseg.training.feature_cache import FeatureCache, file_lock, image_fingerprint, is_rank_zero
from weakseg.training.module import StudentModule
from weakseg.utils.atomic import atomic_write_json, atomic_write_text


def train(
    data: str | Path,
    pseudo: str | Path,
    out: str | Path,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    cache_dir: str | Path | None = None,
    splits_file: str | Path | None = None,
    console: Console | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Train a student on the masks of ``pseudo`` for the images of ``data``; returns the best scores.

    ``resume`` continues from ``out/weights/last.ckpt`` (optimiser, schedule, early-stopping and
    best-checkpoint state included); the feature cache and the split file are reused. ``cache_dir``
    (default ``out/cache``) lets runs on the same images share one feature cache. The split is the
    dataset's own where it declares one (or ``splits_file``'s), else a seeded one; ``out/splits.json``
    keeps it and where it came from. ``console`` (the CLI's) gets the plan, the feature cache's progress
    and a line per epoch; Lightning's own console output only with ``verbose``.
    """
    out = Path(out)
    created = not out.exists()
    last = out / "weights" / "last.ckpt"
    try:
        with quiet_lightning(verbose):
            console = console if is_rank_zero() else None
            return _train(data, pseudo, out, config, resume, cache_dir, splits_file, console)
    except KeyboardInterrupt:
        if not last.is_file():
            _remove_new_run(out, created)
            raise Interrupted(f"{out}: stopped before the first epoch ended; nothing to resume") from None
        command = f"weakseg train {data} --pseudo {pseudo} --out {out} --resume"
        raise Interrupted(f"{out} keeps every finished epoch; continue with: {command}") from None
    except BaseException:
        if not last.is_file():  # failed on its inputs or before training: leave no half-made run
            _remove_new_run(out, created)
        raise


def _remove_new_run(out: Path, created: bool) -> None:
    """Delete a run folder this call created (never one the user had, nor from another rank)."""
    if created and is_rank_zero():
        shutil.rmtree(out, ignore_errors=True)


def _train(
    data: str | Path,
    pseudo: str | Path,
    out: Path | str,
    config: TrainConfig | None,
    resume: bool,
    cache_dir: str | Path | None,
    splits_file: str | Path | None,
    console: Console | None,
) -> dict[str, Any]:
    config = config or TrainConfig()
    out = Path(out)
    last = out / "weights" / "last.ckpt"
    if resume and not last.is_file():
        raise DataError(last, "does not exist: nothing to resume (train without --resume first)")
    if not resume and last.is_file():
        raise DataError(out, "already holds a trained run; pass --resume to continue it, or pick a new --out")
    out.mkdir(parents=True, exist_ok=True)
    data_ann = load_annotations(data)
    masks = load_pseudo(pseudo)
    if masks.class_map != data_ann.class_map:
        ours, theirs = data_ann.class_map.describe(), masks.class_map.describe()
        raise WeaksegError(f"class maps differ: data has {ours}, masks have {theirs}")
    with file_lock(out / ".splits.lock"):  # DDP ranks: the first makes the file, the others read it
        splits = splits_for(data_ann, out / "splits.json", user_file=splits_file, seed=config.seed)
    apply_splits(masks, {k: v for k, v in splits.items() if k in masks.by_file_name()}, strict=False)
    train_set, val_set = masks.subset("train"), _val_masks(config, data_ann, masks, splits)
    if not train_set.images or not val_set.images:
        raise WeaksegError(f"{data}: need images in both the train and the val split")
    if console is not None:
        console.print(_plan(train_set, val_set, splits, out), highlight=False)

    # Seeded here, after every lazy import and data read, so the decoder's initial weights do not
    # depend on what else this process did first.
    L.seed_everything(config.seed, workers=True, verbose=False)
    # Built twice: a first build imports and draws more random numbers than a later one, so the
    # trainable weights are drawn by the second build, after a fresh seed, whatever ran before.
    create_segmenter(config.model, config.backbone, len(masks.class_map), weights=None)
    torch.manual_seed(config.seed)
    model = create_segmenter(
        config.model,
        config.backbone,
        len(masks.class_map),
        weights=config.backbone_weights,
        decoder=config.decoder,
        backbone_mode=config.backbone_mode,  # type: ignore[arg-type]
    )
    sample_config = SampleConfig(
        size=config.size,
        resize=config.resize,
        use_quality=config.loss.use_quality,
        box_fill_as_boxes=config.box_fill_as_boxes,
    )
    loaders = {}
    features = fast_features(model) if config.feature_cache else model.features
    for name, subset in (("train", train_set), ("val", val_set)):
        samples = SegmentationSamples(subset, sample_config)
        flips = config.flips if name == "train" else ("none",)
        key = {
            "model": config.model,
            "backbone": config.backbone,
            "weights": str(config.backbone_weights),
            "size": list(config.size),
            "resize": config.resize,
            "files": [[r.file_name, image_fingerprint(subset.image_path(r))] for r in subset.images],
        }
        cache = None
        if config.feature_cache:
            folder = Path(cache_dir or out / "cache") / name
            with cache_progress(console, f"caching {name} features", len(samples)) as progress:
                cache = FeatureCache.build(
                    folder, features, samples.image, len(samples), key, flips=flips, progress=progress
                )
        dataset = CachedSamples(samples, cache, augment=name == "train", seed=config.seed, flips=flips)
        # Train: every defect image plus a seeded share of defect-free ones, new each epoch (under DDP
        # Lightning wraps the sampler and gives each rank its part); val: every image exactly once.
        sampler = (
            DefectAwareSampler(samples, config.negative_ratio, config.seed, epoch_source=dataset)
            if name == "train"
            else _ValShard(dataset)
        )
        loaders[name] = DataLoader(
            dataset,
            batch_size=config.batch_size,
            sampler=sampler,
            generator=torch.Generator().manual_seed(config.seed),  # same order in every process
            collate_fn=collate,
            num_workers=0,
        )

    if console is not None:
        console.print(_schedule(config, len(loaders["train"].sampler)), highlight=False)
    module = StudentModule(
        model,
        masks.class_map.names,
        config.loss,
        config.lr,
        config.weight_decay,
        config.epochs,
        config.monitor,
        mean_teacher=config.mean_teacher,
    )
    monitor = f"val_{config.monitor}"
    checkpoint = ModelCheckpoint(dirpath=out / "weights", filename="best", monitor=monitor, mode="max")
    # A checkpoint of every finished epoch, whatever the score: what --resume continues from (the
    # best-checkpoint callback's own save_last only refreshes it when a new best is saved).
    latest = ModelCheckpoint(
        dirpath=out / "weights", filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    callbacks: list[Callback] = [
        checkpoint,
        latest,
        EarlyStopping(monitor, mode="max", patience=config.patience),
        DatasetEpoch(loaders["train"].dataset),
    ]
    if console is not None:
        callbacks.append(EpochReport(console, config.epochs, config.monitor))
    if config.ema_decay is not None:
        # Validation and both checkpoints then see the averaged weights (checkpoint["state_dict"]).
        callbacks.append(EMAWeightAveraging(decay=config.ema_decay))
    trainer = L.Trainer(
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        max_epochs=config.epochs,
        logger=CSVLogger(out, name="", version=""),
        callbacks=callbacks,
        deterministic=True,
        enable_model_summary=False,
        enable_progress_bar=False,  # EpochReport's one line per epoch instead of a bar per step
        log_every_n_steps=1,
    )
    if is_rank_zero():  # under DDP every rank runs this function
        atomic_write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        atomic_write_text(out / "class_map.json", json.dumps(masks.class_map.to_dict(), indent=2))
        atomic_write_json(out / "run.json", _provenance(data, pseudo, resume))
    history = out / "metrics.previous.csv"
    if resume and is_rank_zero():
        # Lightning's CSV logger starts metrics.csv afresh; keep the earlier epochs' rows aside.
        _join_csv(out / "metrics.csv", history, history)
    interrupt = _InterruptWatch()
    trainer.callbacks.append(interrupt)
    previous_handler = interrupt.install()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="(Experiment logs|Checkpoint) directory .* not empty")
            trainer.fit(module, loaders["train"], loaders["val"], ckpt_path=last if resume else None)
        interrupt.check()  # a press after the last boundary: stop before calibrating
    except SystemExit:
        # Lightning answers Ctrl-C with sys.exit(1), after ignoring further SIGINTs (the finally below
        # gives back the handler the process started with).
        if interrupt.caught:
            raise KeyboardInterrupt from None
        raise
    finally:  # metrics.csv holds every finished epoch, the resumed ones too, however fit ended
        interrupt.restore(previous_handler)
        if history.is_file() and is_rank_zero():
            _join_csv(history, out / "metrics.csv", out / "metrics.csv")
            history.unlink()
    decision = None
    if is_rank_zero():
        best = checkpoint.best_model_path or str(last)
        load_checkpoint_weights(model, best)
        decision = calibrate(
            model, loaders["val"].dataset, masks.class_map.names, config.monitor, out, config.batch_size
        )
    return {
        "decision": decision.to_dict() if decision is not None else None,
        f"best_val_{config.monitor}": float(checkpoint.best_model_score)
        if checkpoint.best_model_score is not None
        else None,
        "monitor": config.monitor,
        "best_checkpoint": checkpoint.best_model_path,
        "epochs": trainer.current_epoch,
        "skipped_steps": module.skipped_steps,
    }


def _plan(train_set: AnnotationSet, val_set: AnnotationSet, splits: dict[str, str], out: Path) -> str:
    """Which images, before the feature cache and the epochs take minutes."""
    defects = sum(1 for r in train_set.images if r.instances)
    n_test = sum(1 for v in splits.values() if v == "test")
    return (
        f"train {len(train_set.images)} images ({defects} with defects), val {len(val_set.images)}, "
        f"test {n_test}; split {split_source(out / 'splits.json')}"
    )


def _schedule(config: TrainConfig, per_epoch: int) -> str:
    h, w = config.size
    return (
        f"{config.model} on {config.backbone} ({config.backbone_mode}): {config.epochs} epochs of "
        f"{per_epoch} images at {h}x{w}; the time left is estimated after the first epoch"
    )


def _val_masks(
    config: TrainConfig, data_ann: AnnotationSet, masks: AnnotationSet, splits: dict[str, str]
) -> AnnotationSet:
    """The val split with the masks model selection is made on: pseudo-masks, or human masks."""
    if config.val_masks == "pseudo":
        return masks.subset("val")
    apply_splits(data_ann, splits, strict=False)
    val = data_ann.subset("val")
    unmasked = [r.file_name for r in val.images if any(i.mask is None for i in r.instances)]
    if unmasked:
        raise WeaksegError(
            f"val_masks=gt, but {len(unmasked)} val images have instances without a mask "
            f"(first: {unmasked[0]}); use val_masks=pseudo"
        )
    return val


def _provenance(data: str | Path, pseudo: str | Path, resume: bool) -> dict[str, Any]:
    """Where the run's images and masks came from, with a digest of the masks actually used."""
    store = PseudoStore(pseudo)
    masks_file = store.merged_path if store.exists() else Path(pseudo)
    digest = None
    if masks_file.is_file():
        with open(masks_file, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return {
        "data": str(Path(data).resolve()),
        "pseudo": str(Path(pseudo).resolve()),
        "pseudo_kind": "store" if store.exists() else "dataset",
        "pseudo_sha256": digest,
        "teacher": store.meta().get("teacher") if store.exists() else None,
        "resumed": resume,
    }


def _join_csv(first: Path, second: Path, out: Path) -> None:
    """Rows of ``first`` then ``second`` (either may be missing) into ``out``, columns united."""
    rows: list[dict[str, str]] = []
    for path in (first, second):
        if path.is_file():
            with open(path, newline="") as fh:
                rows += list(csv.DictReader(fh))
    columns = sorted({key for row in rows for key in row}, key=lambda k: (k not in ("epoch", "step"), k))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out, text.getvalue())


class _InterruptWatch(Callback):
    """Ctrl-C (SIGINT) during ``fit``, acted on at the next batch or epoch boundary.

    Python's own handling loses a press in two cases. A process started with SIGINT ignored (a
    background job of a non-interactive shell, as a CI script launched with ``&``) gets no
    KeyboardInterrupt at all, so ``kill -INT`` did nothing and the run went on to exit 0 (a CI
    run launched that way failed on it). And a KeyboardInterrupt raised where the main thread happens to be
    is dropped when that is code that swallows it (a finaliser, a library's cleanup). The handler only
    notes the press; the hooks below raise it where Lightning turns it into its shutdown
    (``sys.exit(1)``), and ``caught`` lets train() say so. A second press raises at once.
    """

    def __init__(self) -> None:
        self.requested = False
        self.caught = False

    def install(self) -> Any:
        """Take over SIGINT (main thread only, where Python allows it); returns the handler to restore."""
        if threading.current_thread() is not threading.main_thread():
            return None
        return signal.signal(signal.SIGINT, self._on_sigint)

    @staticmethod
    def restore(previous: Any) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def on_train_batch_end(self, *args: Any) -> None:
        self.check()

    def on_validation_batch_end(self, *args: Any) -> None:
        self.check()

    def on_train_epoch_end(self, *args: Any) -> None:
        self.check()

    def on_validation_epoch_end(self, *args: Any) -> None:
        self.check()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self.caught = self.caught or isinstance(exception, KeyboardInterrupt)


class _ValShard(DistributedSampler):
    """Every val image exactly once over all ranks (``rank::world``, no padding), in order.

    Lightning's default DistributedSampler pads the shards to equal length by repeating images, which
    would count them twice in the all-reduced confusion matrix. The rank is read when iterating, once
    the process group exists; without one this is a plain sequential sampler. Being a
    ``DistributedSampler``, Lightning leaves it in place.
    """

    def __init__(self, dataset: Dataset) -> None:  # no super().__init__: it needs the process group
        self.dataset, self.epoch, self.seed, self.shuffle, self.drop_last = dataset, 0, 0, False, False

    def _shard(self) -> range:
        n = len(self.dataset)  # type: ignore[arg-type]
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return range(dist.get_rank(), n, dist.get_world_size())
        return range(n)

    def __iter__(self) -> Iterator[int]:
        return iter(self._shard())

    def __len__(self) -> int:
        return len(self._shard())
