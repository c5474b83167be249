"""``sam``: Segment Anything (the official ``segment-anything`` package) prompted with each box.

Needs the ``[sam]`` extra and a checkpoint file the user downloaded (``vit_b``, ``vit_l`` or ``vit_h``);
nothing is ever downloaded at run time. ``model_type="auto"`` reads the architecture from the
checkpoint (the image encoder's embedding width and depth).

How an image is prompted:

* **Large boxes share one embedding.** The image is embedded once (``set_image``) and all its large
  boxes go through the mask decoder as one ``B x 4`` batch (``predict_torch``); the batch is split only
  when the full-resolution mask logits would pass a memory budget.
* **Small boxes are zoomed** (``crop_zoom``). SAM sees every image at 1024 pixels on its long side, so
  a defect that would span fewer than ``zoom_min_side`` of those pixels is cut out with a context
  margin of ``zoom_margin`` times its long side on every side, and that window is embedded on its own
  (SAM's resize upscales it to 1024), prompted with the box in window coordinates, and pasted back. A
  window is used only when it is smaller than the image, i.e. when it really gains resolution.
* With ``multimask=True`` SAM proposes three masks per box and the one with the highest predicted IoU
  is kept; ``multimask=False`` asks for SAM's single mask. Either way the confidence is the chosen
  mask's predicted IoU (clamped to ``[0, 1]``), the mask is thresholded at ``mask_threshold`` (SAM's
  own default is 0 on the logits) and clipped to its box.

The model is loaded on the first prediction, not when the teacher is made, so teachers stay cheap to
create and to pickle into worker processes (the loaded model is not pickled). Teachers in one process
with the same checkpoint, model type and device share one loaded model and a small cache of image
embeddings, so a second pass over the same image (``label`` after ``predict``, or another ``multimask``
setting) does not embed it again. Outputs do not depend on the cache.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from weakseg.errors import DataError, WeaksegError
from weakseg.teachers.base import Teacher, TeacherOutput, register_teacher
from weakseg.teachers.refine import box_slices

if TYPE_CHECKING:
    import torch

#: Official SAM (v1) image encoders: (embedding width, depth) -> model type.
ARCHITECTURES: dict[tuple[int, int], str] = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}
MODEL_TYPES = ("vit_b", "vit_l", "vit_h")

MISSING_EXTRA = "the sam teacher needs the [sam] extra: pip install 'weakseg[sam]'"
MISSING_CHECKPOINT = (
    "SAM checkpoint not found; download one of the official vit_b/vit_l/vit_h checkpoints and pass its path"
)

#: Smallest context margin (pixels) around a zoomed box, so even a tiny defect has surroundings.
MIN_ZOOM_CONTEXT = 4
#: Mask-logit elements (float32) upsampled per ``predict_torch`` call (~256 MB): about 21 boxes with
#: ``multimask`` (three masks each) on small images, fewer on large ones.
DECODE_BUDGET = 1 << 26
#: Image embeddings kept per loaded model (4 MB each at fp32).
EMBEDDING_CACHE_SIZE = 16


@register_teacher("sam", help="Segment Anything box prompts (extra [sam]; local checkpoint)")
class SamTeacher(Teacher):
    def __init__(
        self,
        checkpoint: str | Path,
        model_type: str = "auto",
        multimask: bool = True,
        crop_zoom: bool = True,
        zoom_min_side: int = 256,
        zoom_margin: float = 1.0,
        device: str = "cpu",
        mask_threshold: float = 0.0,
    ) -> None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise DataError(path, MISSING_CHECKPOINT)
        if model_type not in ("auto", *MODEL_TYPES):
            raise WeaksegError(
                f"sam: model_type must be 'auto' or one of {', '.join(MODEL_TYPES)}, not {model_type!r}"
            )
        if zoom_min_side < 1 or zoom_margin < 0:
            raise WeaksegError("sam: zoom_min_side must be >= 1 and zoom_margin >= 0")
        path = path.resolve()
        stat = path.stat()
        super().__init__(
            checkpoint=str(path),
            checkpoint_size=stat.st_size,
            checkpoint_mtime_ns=stat.st_mtime_ns,
            model_type=model_type,
            multimask=bool(multimask),
            crop_zoom=bool(crop_zoom),
            zoom_min_side=int(zoom_min_side),
            zoom_margin=float(zoom_margin),
            device=str(device),
            mask_threshold=float(mask_threshold),
        )
        self.checkpoint = path
        self.model_type = model_type
        self.multimask = bool(multimask)
        self.crop_zoom = bool(crop_zoom)
        self.zoom_min_side = int(zoom_min_side)
        self.zoom_margin = float(zoom_margin)
        self.device = str(device)
        self.mask_threshold = float(mask_threshold)
        self._sam: _LoadedSam | None = None

    # -- pickling: workers load their own model ------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_sam"] = None
        return state

    # -- public helpers --------------------------------------------------------------------------
    @property
    def resolved_model_type(self) -> str:
        """The model type in use (loads the model; ``"auto"`` is resolved from the checkpoint)."""
        return self._load().model_type

    def clear_embedding_cache(self) -> None:
        """Forget cached image embeddings (of every teacher sharing this teacher's model)."""
        if self._sam is not None:
            self._sam.cache.clear()

    # -- prediction ------------------------------------------------------------------------------
    def predict(self, image: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray) -> list[TeacherOutput]:
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        if len(boxes) == 0:
            return []
        import torch

        sam = self._load()
        rgb = to_rgb_uint8(image)
        shape = rgb.shape[:2]
        digest = hashlib.blake2b(rgb.tobytes(), digest_size=16).hexdigest() + str(rgb.shape)
        target = sam.predictor.transform.target_length
        prompts = _clip_boxes(boxes, shape)
        windows = (
            zoom_windows(prompts, shape, target, self.zoom_min_side, self.zoom_margin)
            if self.crop_zoom
            else [None] * len(boxes)
        )
        masks: list[np.ndarray | None] = [None] * len(boxes)
        scores = [0.0] * len(boxes)
        valid = [(p[2] > p[0]) and (p[3] > p[1]) for p in prompts]

        with torch.inference_mode():
            shared = [i for i in range(len(boxes)) if valid[i] and windows[i] is None]
            if shared:
                emb = self._embedding(sam, rgb, (digest, None))
                for i, mask, score in zip(shared, *self._decode(sam, emb, prompts[shared]), strict=True):
                    masks[i], scores[i] = mask, score
            for i in range(len(boxes)):
                window = windows[i]
                if not valid[i] or window is None:
                    continue
                rows, cols = window
                crop = np.ascontiguousarray(rgb[rows, cols])
                key = (digest, (rows.start, rows.stop, cols.start, cols.stop))
                emb = self._embedding(sam, crop, key)
                local = prompts[i : i + 1] - np.array([cols.start, rows.start, cols.start, rows.start])
                (crop_mask,), (score,) = self._decode(sam, emb, local)
                full = np.zeros(shape, dtype=bool)
                full[rows, cols] = crop_mask
                masks[i], scores[i] = full, score

        outputs = []
        for box, mask, score in zip(boxes, masks, scores, strict=True):
            inside = np.zeros(shape, dtype=bool)
            if mask is not None:
                rows, cols = box_slices(tuple(box), shape)
                inside[rows, cols] = mask[rows, cols]
            confidence = float(np.clip(score, 0.0, 1.0)) if math.isfinite(score) else 0.0
            outputs.append(TeacherOutput(inside, confidence))
        return outputs

    def _embedding(self, sam: _LoadedSam, rgb: np.ndarray, key: tuple) -> _Embedding:
        cached = sam.cache.get(key)
        if cached is not None:
            sam.cache.move_to_end(key)
            return cached
        sam.predictor.set_image(rgb, image_format="RGB")
        emb = _Embedding(
            sam.predictor.features, tuple(sam.predictor.original_size), tuple(sam.predictor.input_size)
        )
        sam.predictor.reset_image()
        sam.cache[key] = emb
        while len(sam.cache) > EMBEDDING_CACHE_SIZE:
            sam.cache.popitem(last=False)
        return emb

    def _decode(
        self, sam: _LoadedSam, emb: _Embedding, prompts: np.ndarray
    ) -> tuple[list[np.ndarray], list[float]]:
        """Decode ``B`` box prompts on one embedding; full-resolution masks and predicted IoUs."""
        import torch

        predictor = sam.predictor
        # the embedding may come from the cache: put it back into the predictor
        predictor.features = emb.features
        predictor.original_size = emb.original_size
        predictor.input_size = emb.input_size
        predictor.is_image_set = True
        boxes = torch.as_tensor(prompts, dtype=torch.float, device=sam.device)
        boxes = predictor.transform.apply_boxes_torch(boxes, emb.original_size)
        # SAM upsamples each mask's logits to its square input, then to the image: bound both
        n_masks = 3 if self.multimask else 1
        h, w = emb.original_size
        side = predictor.transform.target_length
        chunk = max(1, DECODE_BUDGET // (n_masks * (side * side + h * w)))
        masks: list[np.ndarray] = []
        scores: list[float] = []
        try:
            for start in range(0, len(boxes), chunk):
                logits, iou, _ = predictor.predict_torch(
                    None,
                    None,
                    boxes=boxes[start : start + chunk],
                    multimask_output=self.multimask,
                    return_logits=True,
                )
                best = iou.argmax(dim=1)
                pick = torch.arange(len(best), device=best.device)
                chosen = (logits[pick, best] > self.mask_threshold).cpu().numpy()
                masks.extend(chosen)
                scores.extend(float(s) for s in iou[pick, best].float().cpu())
        finally:
            predictor.reset_image()
        return masks, scores

    # -- loading ---------------------------------------------------------------------------------
    def _load(self) -> _LoadedSam:
        if self._sam is None:
            self._sam = load_sam(self.checkpoint, self.model_type, self.device)
        return self._sam


@dataclass(frozen=True)
class _Embedding:
    features: Any  # torch.Tensor (1, 256, 64, 64)
    original_size: tuple[int, int]
    input_size: tuple[int, int]


@dataclass(eq=False)
class _LoadedSam:
    model: Any
    predictor: Any
    model_type: str
    device: torch.device
    cache: OrderedDict[tuple, _Embedding] = field(default_factory=OrderedDict)


_LOADED: weakref.WeakValueDictionary[tuple, _LoadedSam] = weakref.WeakValueDictionary()


def load_sam(checkpoint: str | Path, model_type: str = "auto", device: str = "cpu") -> _LoadedSam:
    """Build the official SAM model for ``checkpoint`` (shared with other teachers in this process)."""
    try:
        from segment_anything import SamPredictor, sam_model_registry
    except ImportError:
        raise WeaksegError(MISSING_EXTRA) from None

    path = Path(checkpoint)
    if not path.is_file():
        raise DataError(path, MISSING_CHECKPOINT)
    torch_device = resolve_device(device)
    stat = path.stat()
    base = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, str(torch_device))
    loaded = _LOADED.get((*base, model_type))
    if loaded is not None:
        return loaded

    state_dict = read_state_dict(path)
    detected, embed_dim, depth = infer_model_type(state_dict)
    looks = f"image encoder embed dim {embed_dim}, depth {depth}"
    if model_type == "auto":
        if detected is None:
            known = ", ".join(f"{t} ({d}, {n})" for (d, n), t in ARCHITECTURES.items())
            raise DataError(
                path,
                f"cannot infer the SAM model type (model_type='auto'): {looks} match none of {known}; "
                "only official SAM (v1) checkpoints are supported",
            )
        resolved, how = detected, f"inferred by model_type='auto' from {looks}"
    else:
        if detected is not None and detected != model_type:
            raise DataError(
                path,
                f"checkpoint does not fit SAM model type {model_type!r}: it is a {detected} checkpoint "
                f"({looks}); pass model_type={detected!r} or 'auto'",
            )
        resolved, how = model_type, f"requested; checkpoint has {looks}"
    loaded = _LOADED.get((*base, resolved))  # "auto" and its resolved type share one model
    if loaded is not None:
        _LOADED[(*base, model_type)] = loaded
        return loaded
    model = sam_model_registry[resolved](checkpoint=None)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            path, f"checkpoint does not fit SAM model type {resolved!r} ({how}): {first}"
        ) from None
    model.to(torch_device).eval()
    loaded = _LoadedSam(model, SamPredictor(model), resolved, torch_device)
    _LOADED[(*base, model_type)] = _LOADED[(*base, resolved)] = loaded
    return loaded


def read_state_dict(path: Path) -> dict[str, Any]:
    """Load a checkpoint's tensors on the CPU (no code execution: ``weights_only``)."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(path, f"cannot read SAM checkpoint ({detail})") from None
    for wrapper in ("model", "state_dict"):  # tolerate {"model": state_dict} style files
        if (
            isinstance(obj, dict)
            and isinstance(obj.get(wrapper), dict)
            and "image_encoder.pos_embed" not in obj
        ):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise DataError(path, "not a SAM checkpoint (expected a state dict of tensors)")
    return obj


def infer_model_type(state_dict: dict[str, Any]) -> tuple[str | None, int | None, int | None]:
    """``(model type or None, image encoder embedding width, depth)`` read from a SAM state dict."""
    pos = state_dict.get("image_encoder.pos_embed")
    embed_dim = int(pos.shape[-1]) if pos is not None and hasattr(pos, "shape") else None
    blocks = set()
    for key in state_dict:
        parts = key.split(".")
        if len(parts) > 2 and parts[0] == "image_encoder" and parts[1] == "blocks" and parts[2].isdigit():
            blocks.add(int(parts[2]))
    depth = max(blocks) + 1 if blocks else None
    if embed_dim is None or depth is None:
        return None, embed_dim, depth
    return ARCHITECTURES.get((embed_dim, depth)), embed_dim, depth


def resolve_device(device: str) -> torch.device:
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch_device = torch.device(device)
    except RuntimeError as exc:
        raise WeaksegError(f"sam: bad device {device!r} ({exc})") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise WeaksegError(
            f"sam: device {device!r} asked for, but CUDA is not available; use 'cpu' or 'auto'"
        )
    return torch_device


def zoom_windows(
    boxes: np.ndarray,
    shape: tuple[int, int],
    target_length: int = 1024,
    min_side: int = 256,
    margin: float = 1.0,
) -> list[tuple[slice, slice] | None]:
    """The context window to zoom into for each box, or ``None`` for boxes the full image serves.

    A box is small when its long side would span fewer than ``min_side`` pixels of SAM's
    ``target_length`` input; its window is the box plus ``margin`` times its long side (at least
    :data:`MIN_ZOOM_CONTEXT` pixels) on every side, clipped to the image, and it is used only when it is
    smaller than the image (otherwise zooming gains nothing).
    """
    h, w = shape
    scale = target_length / max(h, w)
    windows: list[tuple[slice, slice] | None] = []
    for box in np.asarray(boxes, dtype=float).reshape(-1, 4):
        x0, y0, x1, y1 = box
        long_side = max(x1 - x0, y1 - y0)
        if long_side <= 0 or scale * long_side >= min_side:
            windows.append(None)
            continue
        pad = max(MIN_ZOOM_CONTEXT, math.ceil(margin * long_side))
        rows, cols = box_slices(tuple(box), shape, pad)
        if max(rows.stop - rows.start, cols.stop - cols.start) >= max(h, w):
            windows.append(None)
        else:
            windows.append((rows, cols))
    return windows


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` image as contiguous RGB uint8."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        if image.dtype == np.uint16:
            image = (image // 257).astype(np.uint8)
        elif np.issubdtype(image.dtype, np.floating) and image.size and float(np.nanmax(image)) <= 1.0:
            image = np.clip(np.nan_to_num(image) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            image = np.clip(np.nan_to_num(image.astype(np.float64)), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise WeaksegError(f"sam: expected an (H, W) or (H, W, 1/3/4) image, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def _clip_boxes(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    out = boxes.astype(float).copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, w)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, h)
    return out
