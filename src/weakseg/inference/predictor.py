"""The one pre- and post-processing path of a trained student, shared by predict, evaluate and refine.

Pre-processing is exactly training's: :func:`weakseg.data.samples.to_rgb_tensor` resizes every image to
the run's training size (area when shrinking, bilinear otherwise). Since every image goes to that one
size, images of any sizes are batched together. Post-processing: softmax of the fine head, the class
probabilities resized back to the image's original size (bilinear), then argmax. Instances are the
8-connected components of each class in that label map, scored by the mean class probability.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from weakseg.annotations import masks as mask_ops
from weakseg.annotations.schema import ClassMap, ImageRecord, Instance
from weakseg.data.samples import to_rgb_tensor
from weakseg.errors import DataError
from weakseg.inference.run import RunInfo, load_run
from weakseg.student.model import Segmenter, create_segmenter
from weakseg.training.config import TrainConfig, load_config

#: Origin tag of the student's predicted instances.
ORIGIN_PREDICTION = "prediction:student"


def load_student(
    run: RunInfo, which: str = "best", config: TrainConfig | None = None
) -> tuple[Segmenter, dict[str, Any]]:
    """The run's student in eval mode, and where its weights came from.

    The checkpoint holds every tensor (the frozen backbone's too), so the backbone is built without
    its pretrained weights. With ``ema_decay`` set, Lightning's EMA callback stores the averaged weights
    as the checkpoint's ``state_dict`` (the online ones under ``current_model_state``): those are the
    ones loaded, as in the reference, which evaluates the EMA model.
    """
    config = config or load_config(run.config_path)
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


def to_original_sizes(prob: torch.Tensor, images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Probabilities at the model's size ``[B, K+1, h, w]`` -> one array per image at its own size."""
    out = []
    for image, p in zip(images, prob, strict=True):
        h, w = image.shape[:2]
        if (h, w) != tuple(p.shape[-2:]):
            p = F.interpolate(p[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        out.append(p.cpu().numpy().astype(np.float32, copy=False))
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

    @staticmethod
    def label_map(prob: np.ndarray) -> np.ndarray:
        """Argmax class ids ``(H, W)`` (uint8, or uint16 beyond 255 classes)."""
        dtype = np.uint8 if prob.shape[0] <= 256 else np.uint16
        return prob.argmax(axis=0).astype(dtype)


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
        self.config = load_config(self.run.config_path)
        self.size: tuple[int, int] = (int(self.config.size[0]), int(self.config.size[1]))
        self.batch_size = max(1, int(batch_size))
        self.device = torch.device(device)
        self.model, self.source = load_student(self.run, which, self.config)
        self.model.to(self.device)

    @property
    def class_map(self) -> ClassMap:
        return self.run.class_map

    @property
    def num_classes(self) -> int:
        """Defect classes; probabilities have ``num_classes + 1`` channels (background first)."""
        return len(self.run.class_map)

    def describe(self) -> dict[str, Any]:
        return {"run": str(self.run.path.resolve()), "size": list(self.size), **self.source}

    @torch.inference_mode()
    def _batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        x = torch.stack([to_rgb_tensor(image, self.size) for image in images]).to(self.device)
        return to_original_sizes(torch.softmax(self.model(x)["fine"].float(), dim=1), images)


def prediction_record(
    file_name: str, prob: np.ndarray, *, min_area: int = 0
) -> tuple[ImageRecord, np.ndarray]:
    """Probabilities -> an image record (one instance per 8-connected component of each class, scored
    by the component's mean class probability) and the label map those instances paint.

    Components smaller than ``min_area`` pixels are dropped from both.
    """
    labels = BatchPredictor.label_map(prob)
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
