"""``train-classifier``: the multi-label tag classifier the CAM teachers explain.

Tags come from whatever the dataset holds (:meth:`ImageRecord.image_tags`): a tags CSV or folder per
class, or the classes of its boxes and masks; defect-free images are the negatives, the main defence
against activation maps that fire on the surface's texture (METHODS.md 4.6). Each epoch draws every
tagged image and as many defect-free ones (seeded), so a set that is 71 % defect-free (Magnetic Tile)
does not teach "always OK". Images go to the student's canvas (letterbox by default) with seeded flips.

The run folder follows ``weakseg train``'s conventions: ``config.yaml``, ``class_map.json``,
``splits.json`` (the dataset's own split, or a seeded one; the same file format and rules),
``metrics.csv``, ``weights/best.ckpt`` / ``weights/last.ckpt`` (``--resume`` continues from the last),
and ``metrics.json``: image-level accuracy, per-class AUROC and F1 on the test split.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from rich.console import Console
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchmetrics.functional.classification import binary_auroc, binary_f1_score

from weakseg.annotations.images import read_image
from weakseg.annotations.readers import load_annotations
from weakseg.annotations.schema import AnnotationSet, ClassMap
from weakseg.annotations.splits import apply_splits, splits_for
from weakseg.data.preprocess import RESIZE_MODES, geometry, image_to_canvas
from weakseg.errors import DataError, Interrupted, WeaksegError
from weakseg.student.backbones import FREEZE_MODES
from weakseg.student.classifier import (
    ClassifierConfig,
    TagClassifier,
    class_names_to_targets,
    create_classifier,
)
from weakseg.training.calibrate import load_checkpoint_weights
from weakseg.training.config import _build, parse_overrides
from weakseg.training.console import EpochReport, quiet_lightning
from weakseg.training.data import DatasetEpoch, DefectAwareSampler
from weakseg.utils.atomic import atomic_write_json, atomic_write_text

RUN_KIND = "weakseg-tag-classifier"


@dataclass
class ClassifierTrainConfig:
    backbone: str = "lite0"
    backbone_weights: str | None = "default"
    backbone_mode: str = "last"  # the stride-32 stage trains with the head (frozen / all also work)
    cam_channels: int = 256
    size: tuple[int, int] = (256, 256)
    resize: str = "letterbox"
    negatives: bool = True  # defect-free images as negatives (false: the ablation without them)
    epochs: int = 12
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise WeaksegError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")
        if self.backbone_mode not in FREEZE_MODES:
            raise WeaksegError(f"backbone_mode must be one of {', '.join(FREEZE_MODES)}")

    def model_config(self) -> ClassifierConfig:
        return ClassifierConfig(self.backbone, self.backbone_weights, self.backbone_mode, self.cam_channels)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples -> lists

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> ClassifierTrainConfig:
        return _build(cls, values, where)


def classifier_config(
    overrides: Sequence[str] = (), flags: dict[str, Any] | None = None
) -> ClassifierTrainConfig:
    """Defaults <- command-line flags <- ``key=value`` overrides, every key and type checked."""
    values = {**(flags or {}), **parse_overrides(overrides)}
    return ClassifierTrainConfig.from_dict(values)


# --------------------------------------------------------------------------------------------------
# Data


class TaggedImages(Dataset):
    """``image`` on the canvas (seeded flips when augmenting), multi-hot ``target`` and ``index``."""

    def __init__(self, ann: AnnotationSet, config: ClassifierTrainConfig, *, augment: bool) -> None:
        self.ann, self.config, self.augment = ann, config, augment
        self.num_classes = len(ann.class_map)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ann.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.ann.images[index]
        geom = geometry(record.size, tuple(self.config.size), self.config.resize)
        image = image_to_canvas(read_image(self.ann.image_path(record)), geom)
        if self.augment:
            g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.epoch * 7919 + index)
            flips = torch.randint(2, (2,), generator=g).tolist()
            if flips[0]:
                image = image.flip(-1)
            if flips[1]:
                image = image.flip(-2)
        tags = record.image_tags or ()
        return {"image": image, "target": class_names_to_targets(tags, self.num_classes), "index": index}


def tagged_subset(ann: AnnotationSet, *, negatives: bool = True) -> AnnotationSet:
    """The images whose tags are known (tagged, or known defect-free when ``negatives``)."""
    keep = [r for r in ann.images if r.image_tags is not None and (negatives or r.image_tags)]
    return AnnotationSet(ann.root, ann.class_map, keep, ann.format)


# --------------------------------------------------------------------------------------------------
# Lightning module


class ClassifierModule(L.LightningModule):
    def __init__(self, model: TagClassifier, config: ClassifierTrainConfig) -> None:
        super().__init__()
        self.model, self.config = model, config
        self._val: list[tuple[Tensor, Tensor]] = []

    def training_step(self, batch: dict[str, Any], _: int) -> Tensor:
        loss = F.binary_cross_entropy_with_logits(self.model(batch["image"]), batch["target"])
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch["image"]))
        return loss

    def validation_step(self, batch: dict[str, Any], _: int) -> None:
        logits = self.model(batch["image"])
        loss = F.binary_cross_entropy_with_logits(logits, batch["target"])
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch["image"]))
        self._val.append((torch.sigmoid(logits).detach(), batch["target"]))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        probs = torch.cat([p for p, _ in self._val])
        targets = torch.cat([t for _, t in self._val])
        self._val.clear()
        scores = image_scores(probs, targets)
        self.log("val_mean_auroc", scores["mean_auroc"] if scores["mean_auroc"] is not None else 0.0)
        self.log("val_accuracy", scores["accuracy"])

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(
            self.model.trainable_parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay
        )
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.config.epochs))
        return {"optimizer": optimizer, "lr_scheduler": schedule}


def image_scores(
    probs: Tensor, targets: Tensor, class_names: Sequence[str] | None = None, threshold: float = 0.5
) -> dict[str, Any]:
    """Image-level accuracy (every class right), per-class AUROC (``None`` where a class has only one
    kind of image) and F1 at ``threshold``, and the defect/OK view (any class above ``threshold``)."""
    k = probs.shape[1]
    names = list(class_names) if class_names is not None else [str(i + 1) for i in range(k)]
    predicted = probs >= threshold
    truth = targets > 0.5
    accuracy = float((predicted == truth).all(dim=1).float().mean()) if len(probs) else 0.0
    aurocs: list[float | None] = []
    for c in range(k):
        positives = int(truth[:, c].sum())
        if positives == 0 or positives == len(truth):
            aurocs.append(None)
            continue
        aurocs.append(float(binary_auroc(probs[:, c], truth[:, c].long())))
    f1_list = [float(binary_f1_score(probs[:, c], truth[:, c].long(), threshold=threshold)) for c in range(k)]
    valid = [a for a in aurocs if a is not None]
    defect_truth, defect_pred = truth.any(dim=1), predicted.any(dim=1)
    return {
        "images": len(probs),
        "accuracy": accuracy,
        "mean_auroc": float(np.mean(valid)) if valid else None,
        "auroc": dict(zip(names, aurocs, strict=True)),
        "f1": dict(zip(names, f1_list, strict=True)),
        "defect_images_caught": int((defect_truth & defect_pred).sum()),
        "defect_images": int(defect_truth.sum()),
        "ok_images_flagged": int((~defect_truth & defect_pred).sum()),
        "ok_images": int((~defect_truth).sum()),
        "threshold": threshold,
    }


# --------------------------------------------------------------------------------------------------
# Training


def train_classifier(
    data: str | Path,
    out: str | Path,
    config: ClassifierTrainConfig | None = None,
    *,
    resume: bool = False,
    splits_file: str | Path | None = None,
    console: Console | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Train the tag classifier on ``data``'s train split; returns (and writes) the test scores."""
    out = Path(out)
    created = not out.exists()
    last = out / "weights" / "last.ckpt"
    try:
        with quiet_lightning(verbose):
            return _train_classifier(
                data, out, config or ClassifierTrainConfig(), resume, splits_file, console
            )
    except KeyboardInterrupt:
        if not last.is_file():
            if created:
                shutil.rmtree(out, ignore_errors=True)
            raise Interrupted(f"{out}: stopped before the first epoch ended; nothing to resume") from None
        raise Interrupted(
            f"{out} keeps every finished epoch; continue with: "
            f"weakseg train-classifier {data} --out {out} --resume"
        ) from None
    except BaseException:
        if created and not last.is_file():
            shutil.rmtree(out, ignore_errors=True)
        raise


def _loader(dataset: TaggedImages, config: ClassifierTrainConfig, sampler: Any = None) -> DataLoader:
    return DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, num_workers=0)


def _train_classifier(
    data: str | Path,
    out: Path,
    config: ClassifierTrainConfig,
    resume: bool,
    splits_file: str | Path | None,
    console: Console | None,
) -> dict[str, Any]:
    last = out / "weights" / "last.ckpt"
    if resume and not last.is_file():
        raise DataError(last, "does not exist: nothing to resume (train without --resume first)")
    if not resume and last.is_file():
        raise DataError(out, "already holds a trained classifier; pass --resume, or pick a new --out")
    ann = load_annotations(data)
    if not len(ann.class_map):
        raise DataError(data, "has no defect classes to learn")
    tagged = tagged_subset(ann)
    if not tagged.images:
        raise DataError(
            data, "no image has known tags (tag them, or give boxes or masks to derive tags from)"
        )
    out.mkdir(parents=True, exist_ok=True)
    splits = splits_for(ann, out / "splits.json", user_file=splits_file, seed=config.seed)
    apply_splits(ann, splits, strict=False)
    sets = {
        name: tagged_subset(tagged.subset(name), negatives=config.negatives or name != "train")
        for name in ("train", "val", "test")
    }
    if not sets["train"].images or not sets["val"].images:
        raise WeaksegError(f"{data}: need tagged images in both the train and the val split")
    if console is not None:
        counts = ", ".join(
            f"{n} {len(s.images)} ({sum(1 for r in s.images if r.image_tags)} defect)"
            for n, s in sets.items()
        )
        console.print(
            f"tag classifier on {config.backbone} ({config.backbone_mode}): {counts}", highlight=False
        )

    L.seed_everything(config.seed, workers=True, verbose=False)
    create_classifier(
        len(ann.class_map), config.model_config(), weights=None
    )  # see train.py: seed, then build
    torch.manual_seed(config.seed)
    model = create_classifier(len(ann.class_map), config.model_config())
    train_set = TaggedImages(sets["train"], config, augment=True)
    sampler = DefectAwareSampler(
        train_set, 1.0 if config.negatives else None, config.seed, epoch_source=train_set
    )
    loaders = {
        "train": _loader(train_set, config, sampler),
        "val": _loader(TaggedImages(sets["val"], config, augment=False), config),
    }
    module = ClassifierModule(model, config)
    monitor = "val_mean_auroc" if len(ann.class_map) > 1 else "val_accuracy"
    best = ModelCheckpoint(dirpath=out / "weights", filename="best", monitor=monitor, mode="max")
    latest = ModelCheckpoint(
        dirpath=out / "weights", filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    callbacks: list[Callback] = [best, latest, DatasetEpoch(train_set)]
    if console is not None:
        callbacks.append(EpochReport(console, config.epochs, monitor.removeprefix("val_")))
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=config.epochs,
        logger=CSVLogger(out, name="", version=""),
        callbacks=callbacks,
        deterministic=True,
        enable_model_summary=False,
        enable_progress_bar=False,
        log_every_n_steps=1,
    )
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    atomic_write_text(out / "class_map.json", json.dumps(ann.class_map.to_dict(), indent=2))
    atomic_write_json(
        out / "run.json", {"kind": RUN_KIND, "data": str(Path(data).resolve()), "resumed": resume}
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="(Experiment logs|Checkpoint) directory .* not empty")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, loaders["train"], loaders["val"], ckpt_path=last if resume else None)
    load_checkpoint_weights(model, best.best_model_path or last)
    result = {
        "test": evaluate_classifier(model, sets["test"], config) if sets["test"].images else None,
        "val": evaluate_classifier(model, sets["val"], config),
        "best_checkpoint": best.best_model_path,
        "epochs": trainer.current_epoch,
    }
    atomic_write_json(out / "metrics.json", result, indent=2)
    return result


@torch.inference_mode()
def predict_tags(
    model: TagClassifier, ann: AnnotationSet, config: ClassifierTrainConfig
) -> tuple[Tensor, Tensor]:
    """Sigmoid probabilities ``[N, K]`` and the multi-hot tags ``[N, K]`` of every image of ``ann``."""
    model.eval()
    probs, targets = [], []
    for batch in _loader(TaggedImages(ann, config, augment=False), config):
        probs.append(torch.sigmoid(model(batch["image"])))
        targets.append(batch["target"])
    return torch.cat(probs), torch.cat(targets)


def evaluate_classifier(
    model: TagClassifier, ann: AnnotationSet, config: ClassifierTrainConfig
) -> dict[str, Any]:
    probs, targets = predict_tags(model, ann, config)
    return image_scores(probs, targets, ann.class_map.names)


# --------------------------------------------------------------------------------------------------
# Loading a trained classifier


@dataclass
class ClassifierRun:
    path: Path
    config: ClassifierTrainConfig
    class_map: ClassMap
    model: TagClassifier


def is_classifier_run(path: str | Path) -> bool:
    run = Path(path) / "run.json"
    try:
        return json.loads(run.read_text()).get("kind") == RUN_KIND
    except (OSError, json.JSONDecodeError):
        return False


def load_classifier(path: str | Path, which: str = "best") -> ClassifierRun:
    """A trained classifier run, its model in eval mode with the ``which`` checkpoint's weights."""
    path = Path(path)
    if not is_classifier_run(path):
        raise DataError(path, "is not a tag-classifier run (no run.json of kind weakseg-tag-classifier)")
    try:
        config = ClassifierTrainConfig.from_dict(yaml.safe_load((path / "config.yaml").read_text()) or {})
        class_map = ClassMap.from_dict(json.loads((path / "class_map.json").read_text()))
    except (OSError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise DataError(path, f"unreadable classifier run: {exc}") from None
    checkpoint = path / "weights" / f"{which}.ckpt"
    if not checkpoint.is_file():
        raise DataError(checkpoint, "does not exist (train the classifier first)")
    model = create_classifier(len(class_map), config.model_config(), weights=None)
    load_checkpoint_weights(model, checkpoint)
    return ClassifierRun(path, config, class_map, model.eval())
