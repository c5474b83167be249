"""``weakseg predict``: a trained student over a folder, a file or a dataset.

Output folder (built aside and moved into place only when complete)::

    OUT/masks/<name>.png       indexed label map (0 = background, else the class id)
    OUT/overlays/<name>.jpg    the image with one colour per class blended over it
    OUT/predictions.json       COCO: one RLE instance per 8-connected component of each class,
                               ``score`` = mean class probability over the component
    OUT/classes.txt            class names, one a line (line i = class id i)

An image that cannot be read does not stop the job: it is skipped, listed in ``predictions.json``
under ``weakseg.failed`` and in the result, and the CLI exits with code 2 naming it after the rest is
written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from weakseg.annotations.images import is_image_file, iter_images, read_image, relative_name
from weakseg.annotations.readers import ReadOptions, detect_format, load_annotations
from weakseg.annotations.schema import AnnotationSet, ImageRecord
from weakseg.annotations.writers.coco import coco_dict
from weakseg.annotations.writers.mask_png import mask_file_name
from weakseg.errors import DataError
from weakseg.evaluation.drawing import blend, class_colour, to_rgb
from weakseg.inference.predictor import Predictor, prediction_record
from weakseg.utils.atomic import atomic_directory, atomic_write_json

PREDICTIONS_FILE = "predictions.json"


@dataclass
class PredictResult:
    out: Path
    images: int
    instances: int
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, problem)


def collect_images(
    images: str | Path, *, format: str = "auto", options: ReadOptions | None = None
) -> tuple[Path, list[str]]:
    """``(root, file names)`` for a single image file, a dataset, or a folder searched recursively."""
    path = Path(images)
    if not path.exists():
        raise DataError(path, "does not exist")
    if path.is_file() and is_image_file(path):
        return path.parent, [path.name]
    if format != "auto" or not path.is_dir():
        ann = load_annotations(path, format, options)
        return ann.root, [r.file_name for r in ann.images]
    try:
        detect_format(path)
    except DataError:  # a plain folder of images
        names = [relative_name(p, path) for p in iter_images(path)]
        if not names:
            raise DataError(path, "holds no images (.jpg, .png, .bmp, .tif, .webp)") from None
        return path, names
    ann = load_annotations(path, format, options)
    return ann.root, [r.file_name for r in ann.images]


def overlay(image: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """RGB image with each class's pixels blended in its colour (the evaluation gallery's colours)."""
    lut = np.array([(0, 0, 0)] + [class_colour(c) for c in range(1, num_classes + 1)], dtype=np.float32)
    return blend(to_rgb(image), labels.astype(np.intp), lut)


def predict(
    run: str | Path,
    images: str | Path,
    out: str | Path,
    *,
    which: str = "best",
    batch_size: int = 8,
    min_area: int = 0,
    overwrite: bool = False,
    format: str = "auto",
    options: ReadOptions | None = None,
    device: str = "cpu",
    gate: str | Path | None = None,
    gate_threshold: float = 0.5,
) -> PredictResult:
    """Predict every image of ``images`` with the run's student into the folder ``out``.

    ``run`` may also be an exported ``.onnx`` file (``weakseg export``), run with onnxruntime.
    ``gate`` (a tag-classifier run): an image whose every class probability is below
    ``gate_threshold`` is predicted defect-free (:mod:`weakseg.inference.gate`).
    """
    root, names = collect_images(images, format=format, options=options)
    predictor: Any
    if Path(run).suffix == ".onnx":
        from weakseg.deploy.onnx import OnnxPredictor

        predictor = OnnxPredictor(run, batch_size=batch_size)
    else:
        predictor = Predictor(run, which=which, batch_size=batch_size, device=device)
    k = predictor.num_classes
    the_gate = None
    if gate is not None:
        from weakseg.inference.gate import ClassifierGate

        the_gate = ClassifierGate(gate, gate_threshold)
        the_gate.check_classes(predictor.class_map)
    out = Path(out)
    failed: list[tuple[str, str]] = []

    def readable() -> Iterator[tuple[str, np.ndarray]]:
        for name in names:
            try:
                yield name, read_image(root / name)
            except DataError as exc:
                failed.append((str(root / name), exc.problem))

    records: list[ImageRecord] = []
    with atomic_directory(out, overwrite=overwrite) as tmp:
        for name, image, prob in predictor.iter_probabilities(readable()):
            if the_gate is not None and not the_gate.passes(image):
                prob = np.zeros_like(prob)
                prob[0] = 1.0  # certain background: the classifier sees no defect
            record, labels = prediction_record(
                name, prob, min_area=min_area, threshold=predictor.threshold, vote=predictor.vote
            )
            records.append(record)
            mask_path = tmp / "masks" / mask_file_name(name)
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(labels).save(mask_path, format="PNG")
            overlay_path = (tmp / "overlays" / name).with_suffix(".jpg")
            overlay_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(overlay(image, labels, k)).save(overlay_path, format="JPEG", quality=90)
        ann = AnnotationSet(root, predictor.class_map, records, format="predictions")
        doc = coco_dict(ann)
        doc["weakseg"].update(
            predictor=predictor.describe(),
            min_area=min_area,
            gate={"classifier": str(Path(gate).resolve()), "threshold": gate_threshold} if gate else None,
            failed=[{"path": p, "problem": problem} for p, problem in failed],
        )
        atomic_write_json(tmp / PREDICTIONS_FILE, doc)
        (tmp / "classes.txt").write_text(
            "".join(f"{n}\n" for n in predictor.class_map.names), encoding="utf-8"
        )
    return PredictResult(out, len(records), sum(len(r.instances) for r in records), failed)
