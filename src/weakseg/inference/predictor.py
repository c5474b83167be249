"""The one pre- and post-processing path of a trained student, shared by predict, evaluate and refine.

Pre-processing is exactly training's (:mod:`weakseg.data.preprocess`): every image is placed on the
run's canvas under its size policy (aspect kept and padded, by default), so images of any sizes are
batched together. Post-processing: softmax of the fine head, the padding cropped off, the class
probabilities resized back to the image's original size (bilinear), then argmax. Instances are the
8-connected components of each class in that label map, scored by the mean class probability.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from weakseg.annotations import masks as mask_ops
from weakseg.annotations.schema import ClassMap, ImageRecord, Instance
from weakseg.data.preprocess import canvas_to_original, geometry, image_to_canvas
from weakseg.errors import DataError
from weakseg.inference.run import DECISION_FILE, RunInfo, load_run, read_decision
from weakseg.student.decision import Decision, class_probabilities, labels_from_probabilities
from weakseg.student.fold import fast_features
from weakseg.student.segmenter import Segmenter, create_segmenter
from weakseg.training.config import TrainConfig, load_config

#: Origin tag of the student's predicted instances.
ORIGIN_PREDICTION = "prediction:student"


def load_decision(run_dir: Path) -> Decision:
    """The run's decision rule (``decision.json``, chosen on validation); fine head at 0.5 without one."""
    doc = read_decision(Path(run_dir))
    if doc is None:
        return Decision()
    try:
        return Decision.from_dict(doc)
    except (TypeError, ValueError) as exc:
        raise DataError(Path(run_dir) / DECISION_FILE, f"is not a valid decision file: {exc}") from None


def load_student(
    run: RunInfo, which: str = "best", config: TrainConfig | None = None
) -> tuple[Segmenter, dict[str, Any]]:
    """The run's student in eval mode, and where its weights came from.

    The checkpoint holds every tensor (the frozen backbone's too), so the backbone is built without
    its pretrained weights. With ``ema_decay`` set, Lightning's EMA callback stores the averaged weights
    as the checkpoint's ``state_dict`` (the online ones under ``current_model_state``): those are the
    ones loaded, as in the reference, which evaluates the EMA model.
    """
    config = config or load_config(run.config_path, run_file=True)
    path = run.checkpoint(which)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file
        raise DataError(path, f"cannot read checkpoint: {exc}") from None
    if not isinstance(ckpt, dict):
        raise DataError(path, "is not a Lightning checkpoint")
    if not isinstance(ckpt.get("state_dict"), dict):
        raise DataError(path, "has no state_dict; is it a weakseg checkpoint?")
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    source = "ema" if "current_model_state" in ckpt else "model"
    model = create_segmenter(
        config.model, config.backbone, len(run.class_map), weights=None, decoder=config.decoder
    )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DataError(
            path,
            f"does not fit the run's model ({len(missing)} missing, {len(unexpected)} unexpected tensors, "
            f"e.g. {(missing or unexpected)[0]})",
        )
    model.eval()
    return model, {"checkpoint": str(path), "weights": source, "epoch": ckpt.get("epoch")}


def to_canvas_batch(images: Sequence[np.ndarray], size: tuple[int, int], resize: str) -> torch.Tensor:
    """The model's input batch ``[B, 3, H, W]``: every image placed on the canvas as in training."""
    return torch.stack([image_to_canvas(image, geometry(image.shape[:2], size, resize)) for image in images])


def to_original_sizes(prob: torch.Tensor, images: Sequence[np.ndarray], resize: str) -> list[np.ndarray]:
    """Canvas probabilities ``[B, K+1, H, W]`` -> one array per image at its own size."""
    out = []
    for image, p in zip(images, prob, strict=True):
        geom = geometry(image.shape[:2], tuple(p.shape[-2:]), resize)
        out.append(canvas_to_original(p, geom).cpu().numpy().astype(np.float32, copy=False))
    return out


class BatchPredictor:
    """Batching and streaming over a ``_batch`` (images -> probabilities at their own sizes).

    Subclasses set ``batch_size`` and implement ``_batch``: :class:`Predictor` (PyTorch) and
    :class:`weakseg.deploy.onnx.OnnxPredictor` share everything else.
    """

    batch_size: int

    def _batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def probabilities(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Class probabilities ``(K+1, H, W)`` float32 at each image's own size (uint8 gray or RGB in)."""
        out: list[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            out.extend(self._batch(images[start : start + self.batch_size]))
        return out

    def iter_probabilities(
        self, items: Iterable[tuple[Any, np.ndarray]]
    ) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        """``(key, image)`` pairs in, ``(key, image, probabilities)`` out, ``batch_size`` at a time."""
        batch: list[tuple[Any, np.ndarray]] = []
        for item in items:
            batch.append(item)
            if len(batch) == self.batch_size:
                yield from self._emit(batch)
                batch = []
        if batch:
            yield from self._emit(batch)

    def _emit(self, batch: list[tuple[Any, np.ndarray]]) -> Iterator[tuple[Any, np.ndarray, np.ndarray]]:
        probs = self._batch([image for _, image in batch])
        for (key, image), prob in zip(batch, probs, strict=True):
            yield key, image, prob

    #: Defect where ``1 - p(background) >= threshold``, one class per region or per pixel (the run's
    #: decision; 0.5 and per-region without one).
    threshold: float = 0.5
    vote: str = "component"

    def label_map(self, prob: np.ndarray) -> np.ndarray:
        """Class ids ``(H, W)`` under the decision (uint8, or uint16 beyond 255 classes)."""
        return labels_from_probabilities(prob, self.threshold, self.vote)


class Predictor(BatchPredictor):
    """A trained student ready to predict: ``Predictor(run_dir).probabilities(images)``."""

    def __init__(
        self,
        run_dir: str | Path,
        which: str = "best",
        batch_size: int = 8,
        device: str | torch.device = "cpu",
    ) -> None:
        self.run = load_run(run_dir)
        self.config = load_config(self.run.config_path, run_file=True)
        self.size: tuple[int, int] = (int(self.config.size[0]), int(self.config.size[1]))
        self.resize = self.config.resize
        self.batch_size = max(1, int(batch_size))
        self.device = torch.device(device)
        self.model, self.source = load_student(self.run, which, self.config)
        self.decision = load_decision(self.run.path)
        self.threshold, self.vote = self.decision.threshold, self.decision.vote
        self.model.to(self.device)
        self._features = fast_features(self.model)  # the same features, about twice as fast on CPU

    @property
    def class_map(self) -> ClassMap:
        return self.run.class_map

    @property
    def num_classes(self) -> int:
        """Defect classes; probabilities have ``num_classes + 1`` channels (background first)."""
        return len(self.run.class_map)

    def describe(self) -> dict[str, Any]:
        return {
            "run": str(self.run.path.resolve()),
            "size": list(self.size),
            "resize": self.resize,
            "decision": self.decision.to_dict(),
            **self.source,
        }

    @torch.inference_mode()
    def _batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        x = to_canvas_batch(images, self.size, self.resize).to(self.device)
        prob = class_probabilities(self.model.decode(self._features(x), x), self.decision.source)
        return to_original_sizes(prob, images, self.resize)


def prediction_record(
    file_name: str, prob: np.ndarray, *, min_area: int = 0, threshold: float = 0.5, vote: str = "component"
) -> tuple[ImageRecord, np.ndarray]:
    """Probabilities -> an image record (one instance per 8-connected component of each class, scored
    by the component's mean class probability) and the label map those instances paint.

    Components smaller than ``min_area`` pixels are dropped from both. A pixel is defect where
    ``1 - p(background) >= threshold`` (pass the predictor's ``threshold`` and ``vote``: the run's
    decision).
    """
    labels = labels_from_probabilities(prob, threshold, vote)
    h, w = labels.shape
    instances = []
    kept = np.zeros_like(labels)
    for class_id in range(1, prob.shape[0]):
        class_mask = labels == class_id
        if not class_mask.any():
            continue
        for box, component in mask_ops.components(class_mask, min_area=min_area):
            score = float(prob[class_id][component].mean())
            kept[component] = class_id
            instances.append(
                Instance(
                    class_id=class_id,
                    box=box,
                    mask=mask_ops.encode(component),
                    origin=ORIGIN_PREDICTION,
                    score=round(min(max(score, 0.0), 1.0), 6),
                )
            )
    return ImageRecord(file_name, w, h, instances=instances, annotated=True), kept
