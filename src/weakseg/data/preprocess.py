"""The one size policy: how an image and its labels reach the model's canvas, and how predictions go back.

Training, the feature cache, the predictor and the ONNX metadata all read this module, so an image is
prepared the same way wherever it is seen.

* ``letterbox`` (default) keeps the aspect ratio: the image is scaled to fit the canvas and padded at the
  bottom and right by repeating its edge pixels. Squashing a 100 x 600 crop into a square distorts a
  defect's shape by a factor of six; letterboxing does not, and every image still has one canvas size,
  so batches and the memory-mapped feature cache keep working.
* ``stretch`` is the old policy (squash to the canvas), kept for runs trained with it.

Labels never lose a thin defect when shrunk: a class keeps every canvas pixel it covers by half or more,
and a pixel it touches with no such pixel around it (a 1-3 px crack shrunk below one pixel) is kept
too. Nearest-neighbour shrinking drops such strokes from the target while the image keeps them.
Padding is :data:`IGNORE_INDEX` in targets and is cropped off predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

#: Target value for pixels that carry no supervision (unlabelled images, padding, failed masks).
IGNORE_INDEX = 255

RESIZE_MODES = ("letterbox", "stretch")


@dataclass(frozen=True)
class Geometry:
    """Where an ``original`` ``(h, w)`` image lands: scaled into the top-left ``content`` of ``canvas``."""

    original: tuple[int, int]
    content: tuple[int, int]
    canvas: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """``(sy, sx)``: canvas pixels per original pixel."""
        return self.content[0] / self.original[0], self.content[1] / self.original[1]

    @property
    def shrinks(self) -> bool:
        return self.content[0] < self.original[0] and self.content[1] < self.original[1]

    def scale_boxes(self, boxes: np.ndarray | list) -> np.ndarray:
        """``(x0, y0, x1, y1)`` boxes in original pixels -> canvas pixels, ``[N, 4]`` float32."""
        sy, sx = self.scale
        arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        return arr * np.array([sx, sy, sx, sy], dtype=np.float32)


def geometry(original: tuple[int, int], canvas: tuple[int, int], mode: str = "letterbox") -> Geometry:
    """The placement of an ``(h, w)`` image on an ``(H, W)`` canvas under ``mode``."""
    h, w = int(original[0]), int(original[1])
    ch, cw = int(canvas[0]), int(canvas[1])
    if mode == "stretch":
        return Geometry((h, w), (ch, cw), (ch, cw))
    if mode != "letterbox":
        raise ValueError(f"unknown resize mode {mode!r}; choose one of {', '.join(RESIZE_MODES)}")
    s = min(ch / h, cw / w)
    content = (min(ch, max(1, round(h * s))), min(cw, max(1, round(w * s))))
    return Geometry((h, w), content, (ch, cw))


def _pad(arr: np.ndarray, geom: Geometry, value: float | None) -> np.ndarray:
    """Pad bottom/right to the canvas: edge pixels repeated (``value=None``) or a constant."""
    pad_h, pad_w = geom.canvas[0] - arr.shape[0], geom.canvas[1] - arr.shape[1]
    if not pad_h and not pad_w:
        return arr
    if value is None:
        return cv2.copyMakeBorder(arr, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
    return cv2.copyMakeBorder(arr, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=value)


def _resize(arr: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    if arr.shape[:2] == tuple(size):
        return arr
    out = cv2.resize(arr, (size[1], size[0]), interpolation=interpolation)
    return out if out.ndim == arr.ndim else out[..., None]


def image_to_canvas(image: np.ndarray, geom: Geometry) -> torch.Tensor:
    """uint8 gray or RGB ``(h, w[, c])`` -> float ``[3, H, W]`` in ``[0, 1]`` on the canvas.

    Area interpolation when both sides shrink (no aliasing of fine texture), bilinear otherwise.
    """
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    rgb = np.ascontiguousarray(rgb[..., :3])
    rgb = _resize(rgb, geom.content, cv2.INTER_AREA if geom.shrinks else cv2.INTER_LINEAR)
    rgb = _pad(rgb, geom, None)
    return torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1).float() / 255.0


def labels_to_canvas(labels: np.ndarray, geom: Geometry, pad_value: int = IGNORE_INDEX) -> np.ndarray:
    """Class-id map ``(h, w)`` (may hold :data:`IGNORE_INDEX`) -> ``(H, W)`` uint8, thin defects kept.

    Growing uses nearest neighbour. Shrinking takes each value's area coverage of every canvas pixel:
    the value covering most of the pixel wins if it covers at least half; a defect class also keeps a
    pixel it touches when none of that pixel's 8 neighbours already carries it, so a stroke thinner than
    one canvas pixel survives as a one-pixel line instead of vanishing.
    """
    labels = np.asarray(labels)
    if tuple(labels.shape) == tuple(geom.content):
        out = labels.astype(np.uint8, copy=False)
    elif not (geom.content[0] < labels.shape[0] or geom.content[1] < labels.shape[1]):
        out = _resize(labels.astype(np.uint8), geom.content, cv2.INTER_NEAREST)
    else:
        out = _shrink_labels(labels, geom.content)
    return _pad(np.ascontiguousarray(out), geom, pad_value)


def _shrink_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    values = [int(v) for v in np.unique(labels)]
    coverage = {
        v: cv2.resize((labels == v).astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA)
        for v in values
    }
    stack = np.stack([coverage[v] for v in values])
    best = np.asarray(values, dtype=np.uint8)[stack.argmax(axis=0)]
    out = np.where(stack.max(axis=0) >= 0.5, best, 0).astype(np.uint8)
    # Pixels no value covers by half (a boundary shared three ways): background unless rescued below.
    kernel = np.ones((3, 3), np.uint8)
    for v in values:
        if v in (0, IGNORE_INDEX):
            continue
        near = cv2.dilate((out == v).astype(np.uint8), kernel).astype(bool)
        rescue = (coverage[v] > 0) & ~near & (out == 0)
        out[rescue] = v
    return out


def weights_to_canvas(weights: np.ndarray, geom: Geometry) -> np.ndarray:
    """Per-pixel float weights to the canvas (area mean when shrinking; padding 0)."""
    interpolation = cv2.INTER_AREA if geom.shrinks else cv2.INTER_LINEAR
    return _pad(_resize(weights.astype(np.float32), geom.content, interpolation), geom, 0.0)


def canvas_to_original(prob: torch.Tensor, geom: Geometry) -> torch.Tensor:
    """Canvas probabilities ``[C, H, W]`` -> ``[C, h, w]`` of the original image (padding cropped,
    bilinear)."""
    ch, cw = geom.content
    p = prob[..., :ch, :cw]
    if tuple(p.shape[-2:]) != tuple(geom.original):
        p = F.interpolate(p[None], size=geom.original, mode="bilinear", align_corners=False)[0]
    return p
