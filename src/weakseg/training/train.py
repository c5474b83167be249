"""``train``: a student on pseudo-masks (or on human masks, for the fully supervised ceiling).

The run folder holds everything needed to reproduce and to use the run: ``config.yaml`` (resolved),
``class_map.json``, ``splits.json``, ``metrics.csv`` (Lightning's CSV logger), ``weights/best.ckpt``
and ``weights/last.ckpt``, and the feature cache under ``cache/``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from weakseg.annotations.readers import load_annotations
from weakseg.annotations.schema import AnnotationSet
from weakseg.annotations.splits import apply_splits, splits_for
from weakseg.data.samples import SampleConfig, SegmentationSamples
from weakseg.errors import WeaksegError
from weakseg.pseudolabel.store import PseudoStore
from weakseg.student.backbones import create_backbone
from weakseg.student.losses import LossConfig
from weakseg.student.model import DecoderConfig, StudentModel
from weakseg.training.data import CachedSamples, collate
from weakseg.training.feature_cache import FLIPS, FeatureCache
from weakseg.training.module import StudentModule


@dataclass
class TrainConfig:
    backbone: str = "lite0"
    backbone_weights: str | None = "default"
    size: tuple[int, int] = (256, 256)
    epochs: int = 30
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 1e-2
    seed: int = 0
    patience: int = 10
    flips: tuple[str, ...] = FLIPS
    use_quality: bool = False
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    accelerator: str = "cpu"
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)


def load_pseudo(pseudo: str | Path) -> AnnotationSet:
    """A pseudo-label store (its merged file) or any annotation dataset (human masks)."""
    store = PseudoStore(pseudo)
    if store.exists():
        if not store.merged_path.is_file():
            raise WeaksegError(f"{pseudo}: the store has no pseudo.json yet; finish and merge it first")
        return load_annotations(store.merged_path, "coco")
    return load_annotations(pseudo)


def train(
    data: str | Path, pseudo: str | Path, out: str | Path, config: TrainConfig | None = None
) -> dict[str, Any]:
    """Train a student on the masks of ``pseudo`` for the images of ``data``; returns the best scores."""
    config = config or TrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(config.seed, workers=True, verbose=False)
    data_ann = load_annotations(data)
    masks = load_pseudo(pseudo)
    if masks.class_map != data_ann.class_map:
        ours, theirs = data_ann.class_map.describe(), masks.class_map.describe()
        raise WeaksegError(f"class maps differ: data has {ours}, masks have {theirs}")
    splits = splits_for(data_ann, out / "splits.json", seed=config.seed)
    apply_splits(masks, {k: v for k, v in splits.items() if k in masks.by_file_name()}, strict=False)
    train_set, val_set = masks.subset("train"), masks.subset("val")
    if not train_set.images or not val_set.images:
        raise WeaksegError(f"{data}: need images in both the train and the val split")

    backbone = create_backbone(config.backbone, weights=config.backbone_weights)
    model = StudentModel(backbone, len(masks.class_map), config.decoder)
    sample_config = SampleConfig(size=config.size, use_quality=config.use_quality)
    loaders = {}
    for name, subset in (("train", train_set), ("val", val_set)):
        samples = SegmentationSamples(subset, sample_config)
        flips = config.flips if name == "train" else ("none",)
        key = {
            "backbone": config.backbone,
            "weights": str(config.backbone_weights),
            "size": list(config.size),
            "files": [r.file_name for r in subset.images],
        }
        cache = FeatureCache.build(
            out / "cache" / name, model.features, samples.image, len(samples), key, flips=flips
        )
        dataset = CachedSamples(samples, cache, augment=name == "train", seed=config.seed)
        loaders[name] = DataLoader(
            dataset, batch_size=config.batch_size, shuffle=name == "train", collate_fn=collate, num_workers=0
        )

    module = StudentModule(
        model, masks.class_map.names, config.loss, config.lr, config.weight_decay, config.epochs
    )
    checkpoint = ModelCheckpoint(
        dirpath=out / "weights", filename="best", monitor="val_anomaly_miou", mode="max", save_last=True
    )
    trainer = L.Trainer(
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        max_epochs=config.epochs,
        logger=CSVLogger(out, name="", version=""),
        callbacks=[
            checkpoint,
            EarlyStopping("val_anomaly_miou", mode="max", patience=config.patience),
            _FlipEpoch(loaders["train"].dataset),
        ],
        deterministic=True,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    (out / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(asdict(config), default=list))))
    (out / "class_map.json").write_text(json.dumps(masks.class_map.to_dict(), indent=2))
    trainer.fit(module, loaders["train"], loaders["val"])
    return {
        "best_val_anomaly_miou": float(checkpoint.best_model_score)
        if checkpoint.best_model_score is not None
        else None,
        "best_checkpoint": checkpoint.best_model_path,
        "epochs": trainer.current_epoch,
        "skipped_steps": module.skipped_steps,
    }


class _FlipEpoch(Callback):
    """Give the training set the epoch number so its flips change every epoch (reproducibly)."""

    def __init__(self, dataset: CachedSamples) -> None:
        self.dataset = dataset

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.dataset.epoch = trainer.current_epoch
