"""``weakseg export RUN --out OUT.onnx`` and :class:`OnnxPredictor`.

The graph takes RGB floats in ``[0, 1]`` (``[B, 3, H, W]``, H x W = the run's training size, any batch)
and returns class probabilities ``[B, K+1, H, W]``; normalisation and padding are inside it, as in the
PyTorch model. What cannot live in a fixed-size graph, the resize to the training size and back, is
written beside it in ``OUT.json`` (size, resize policy, class names), which :class:`OnnxPredictor`
reads: it pre-processes with the same :func:`~weakseg.inference.predictor.to_canvas_batch` and
post-processes with the same :func:`~weakseg.inference.predictor.to_original_sizes` as the PyTorch
predictor, so the two agree to float rounding. The run's decision (which head, which threshold) is
in the graph (its probabilities) and in the metadata (its threshold).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from weakseg.annotations.schema import ClassMap
from weakseg.errors import DataError, WeaksegError
from weakseg.inference.predictor import BatchPredictor, Predictor, to_canvas_batch, to_original_sizes
from weakseg.student.decision import class_probabilities
from weakseg.utils.atomic import atomic_write_bytes, atomic_write_json

FORMAT = "weakseg-onnx"


class _Probabilities(nn.Module):
    """The student with its decision head's probabilities: the exported graph's whole job."""

    def __init__(self, model: nn.Module, source: str) -> None:
        super().__init__()
        self.model, self.source = model, source

    def forward(self, image: Tensor) -> Tensor:
        return class_probabilities(self.model(image), self.source)


def metadata_path(onnx_path: str | Path) -> Path:
    return Path(onnx_path).with_suffix(".json")


def export_onnx(run: str | Path, out: str | Path, *, which: str = "best") -> dict[str, Any]:
    """Export the run's student to ``out`` (``.onnx``) with its metadata file; returns the metadata."""
    out = Path(out)
    if out.suffix != ".onnx":
        raise WeaksegError(f"{out}: the output file must end in .onnx")
    predictor = Predictor(run, which=which)
    h, w = predictor.size
    example = torch.rand(1, 3, h, w)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        with warnings.catch_warnings():
            # The tracer flags the decoder's shape checks; they are constant for the fixed canvas the
            # metadata pins, which is exactly what the trace records.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                _Probabilities(predictor.model, predictor.decision.source).eval(),
                (example,),
                str(path),
                input_names=["image"],
                output_names=["probabilities"],
                dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
                dynamo=False,
            )
        atomic_write_bytes(out, path.read_bytes())
    meta = {
        "format": FORMAT,
        "version": 1,
        "input": {"name": "image", "layout": "NCHW", "channels": "RGB", "range": [0.0, 1.0], "size": [h, w]},
        "output": {"name": "probabilities", "classes": ["background", *predictor.class_map.names]},
        "resize": predictor.resize,
        "resize_in": "letterbox: keep the aspect ratio, fit the canvas, pad bottom/right by repeating edge "
        "pixels (stretch: squash to the canvas); area when both sides shrink, else bilinear (OpenCV)",
        "resize_out": "crop the padding, bilinear (align_corners=False) to the original size",
        "decision": predictor.decision.to_dict(),
        "label_rule": "defect where 1 - p[background] >= decision.threshold; class: the most likely defect "
        "class per pixel (vote=pixel) or per 8-connected region, by summed probability (vote=component)",
        "class_map": predictor.class_map.to_dict(),
        "source": predictor.describe(),
    }
    atomic_write_json(metadata_path(out), meta)
    return meta


class OnnxPredictor(BatchPredictor):
    """The exported model behind :class:`~weakseg.inference.predictor.Predictor`'s interface."""

    def __init__(self, onnx_path: str | Path, batch_size: int = 8) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise WeaksegError("ONNX prediction needs onnxruntime: pip install 'weakseg[export]'") from exc
        self.path = Path(onnx_path)
        meta_file = metadata_path(self.path)
        if not self.path.is_file():
            raise DataError(self.path, "does not exist")
        try:
            self.meta = json.loads(meta_file.read_text())
        except FileNotFoundError:
            raise DataError(meta_file, "is missing: export writes it beside the .onnx file") from None
        except json.JSONDecodeError as exc:
            raise DataError(meta_file, f"is not valid JSON ({exc})") from None
        if self.meta.get("format") != FORMAT:
            raise DataError(meta_file, f"is not a {FORMAT} metadata file")
        self.size: tuple[int, int] = tuple(self.meta["input"]["size"])  # type: ignore[assignment]
        self.resize = str(self.meta.get("resize", "stretch"))  # files exported before letterboxing
        decision = self.meta.get("decision", {})
        self.threshold = float(decision.get("threshold", 0.5))
        self.vote = str(decision.get("vote", "pixel"))  # files exported before the vote existed: argmax
        self.batch_size = max(1, int(batch_size))
        self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])

    @property
    def class_map(self) -> ClassMap:
        return ClassMap.from_dict(self.meta["class_map"])

    @property
    def num_classes(self) -> int:
        return len(self.class_map)

    def describe(self) -> dict[str, Any]:
        return {"onnx": str(self.path.resolve()), "size": list(self.size), "source": self.meta.get("source")}

    def _batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        x = to_canvas_batch(images, self.size, self.resize).numpy()
        (prob,) = self.session.run(None, {"image": x})
        return to_original_sizes(torch.from_numpy(prob), images, self.resize)
