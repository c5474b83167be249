"""``contrast``: pixels inside the box that stand out from a ring of background around it.

Inspection images are often grayscale and low in contrast, where GrabCut's colour models have little
to hold on to. This teacher asks a simpler question: which pixels inside the box differ from the
surface just outside it?

1. Intensity (luminance for colour images), lightly smoothed.
2. Robust statistics of a ring around the box (median and MAD), leaving out every box of the image so
   neighbouring defects do not pollute the background estimate. A ring that falls outside the image
   or is too small falls back to all pixels outside the boxes.
3. Robust z-scores inside the box; polarity (darker or brighter) chosen per box from whichever tail
   holds more mass above ``z_min``.
4. Threshold: Otsu on the signed z-scores, never below ``z_min``.
5. Region growth: a defect that is a *region* (wider than ``min_width`` pixels on average) grows into
   the connected pixels whose coarse-scale z (smoothed at ``coarse`` x the box's short side) exceeds
   ``z_low``, so a large low-contrast patch is filled instead of speckled. Thin strokes (cracks,
   scratches) are not grown: at the coarse scale they are averaged away with the road or tile around
   them. ``z_fine_low`` optionally also requires the fine-scale z there (0 = off). A small closing then
   joins broken strokes.

Confidence is ``1 - exp(-median z of the mask / 6)``: how strongly the mask stands out. When nothing
stands out the mask is kept empty and flagged (``on_empty="keep"``, the default: it is the teacher's
false negative that the student's self-correction targets), or replaced by the box
(``on_empty="box"``, with the box teacher's confidence), which raises raw pseudo-mask IoU on surfaces
whose defects fill their boxes (Magnetic Tile 0.33 -> 0.41, benchmarks/teachers.py).
"""

from __future__ import annotations

import cv2
import numpy as np

from weakseg.teachers.base import Teacher, TeacherOutput, register_teacher
from weakseg.teachers.box_fill import BOX_CONFIDENCE
from weakseg.teachers.refine import box_slices


@register_teacher("contrast", help="pixels inside the box that stand out from a ring around it")
class ContrastTeacher(Teacher):
    def __init__(
        self,
        ring: float = 0.5,
        min_ring: int = 6,
        z_min: float = 2.5,
        sigma: float = 1.0,
        close_px: int = 3,
        coarse: float = 0.125,
        z_low: float = 0.5,
        min_width: float = 4.0,
        z_fine_low: float = 0.0,
        on_empty: str = "keep",
    ) -> None:
        if on_empty not in ("keep", "box"):
            raise ValueError(f"on_empty must be 'keep' or 'box', not {on_empty!r}")
        super().__init__(
            ring=ring,
            min_ring=min_ring,
            z_min=z_min,
            sigma=sigma,
            close_px=close_px,
            coarse=coarse,
            z_low=z_low,
            min_width=min_width,
            z_fine_low=z_fine_low,
            on_empty=on_empty,
        )
        self.ring, self.min_ring, self.z_min, self.sigma = ring, min_ring, z_min, sigma
        self.close_px, self.coarse, self.z_low, self.min_width = close_px, coarse, z_low, min_width
        self.z_fine_low, self.on_empty = z_fine_low, on_empty

    def predict(self, image: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray) -> list[TeacherOutput]:
        raw = _intensity(image)
        smooth = cv2.GaussianBlur(raw, (0, 0), self.sigma) if self.sigma > 0 else raw
        occupied = np.zeros(raw.shape, dtype=bool)
        for box in boxes:
            occupied[box_slices(tuple(box), raw.shape, 1)] = True
        return [self._one(raw, smooth, occupied, tuple(box)) for box in boxes]

    def _one(
        self,
        raw: np.ndarray,
        smooth: np.ndarray,
        occupied: np.ndarray,
        box: tuple[float, float, float, float],
    ) -> TeacherOutput:
        shape = raw.shape
        short_side = max(1.0, min(box[2] - box[0], box[3] - box[1]))
        outer = box_slices(box, shape, max(self.min_ring, round(self.ring * short_side)))
        inner = box_slices(box, shape)
        local = (
            slice(inner[0].start - outer[0].start, inner[0].stop - outer[0].start),
            slice(inner[1].start - outer[1].start, inner[1].stop - outer[1].start),
        )
        ring = ~occupied[outer]
        fallback = smooth[~occupied] if (~occupied).sum() >= 10 else smooth.ravel()
        z = _robust_z(smooth[outer], ring, fallback)[local]

        dark, bright = -z, z
        sign = -1.0 if _tail(dark, self.z_min) >= _tail(bright, self.z_min) else 1.0
        signed = sign * z
        mask = np.zeros(shape, dtype=bool)
        if not (signed > self.z_min).any():
            return self._nothing_found(mask, inner)
        found = signed > max(self.z_min, _otsu(signed))
        if self.coarse > 0 and _mean_width(found) >= self.min_width:
            coarse_img = cv2.GaussianBlur(raw[outer], (0, 0), max(2.0, self.coarse * short_side))
            zc = sign * _robust_z(coarse_img, ring, coarse_img.ravel())[local]
            found = _grow(found, (zc > self.z_low) & (signed > self.z_fine_low))
        if self.close_px > 1:
            kernel = np.ones((self.close_px, self.close_px), np.uint8)
            found = cv2.morphologyEx(found.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
        if not found.any():
            return self._nothing_found(mask, inner)
        mask[inner] = found
        strength = float(np.median(signed[found])) if found.any() else 0.0
        return TeacherOutput(mask, float(1.0 - np.exp(-max(strength, 0.0) / 6.0)))

    def _nothing_found(self, mask: np.ndarray, inner: tuple[slice, slice]) -> TeacherOutput:
        """Nothing stands out: keep the empty mask (the student's self-correction target), or fall
        back to the box with the box teacher's low confidence when raw pseudo-mask IoU matters more."""
        if self.on_empty == "box":
            mask[inner] = True
            return TeacherOutput(mask, BOX_CONFIDENCE)
        return TeacherOutput(mask, 0.0)


def _intensity(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image.astype(np.float32)
    return cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY).astype(np.float32)


def _robust_z(values: np.ndarray, ring: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """z-scores of ``values`` against the median/MAD of its ring pixels (or of ``fallback``)."""
    sample = values[ring] if ring.sum() >= 10 else fallback
    median = float(np.median(sample))
    spread = max(1.4826 * float(np.median(np.abs(sample - median))), 1.0)  # flat rings: one grey level
    return (values - median) / spread


def _tail(z: np.ndarray, z_min: float) -> float:
    return float(np.clip(z - z_min, 0.0, None).sum())


def _otsu(signed: np.ndarray) -> float:
    scaled = np.clip(signed * 10.0, 0, 255).astype(np.uint8)
    threshold, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(threshold) / 10.0


def _mean_width(mask: np.ndarray) -> float:
    """Average stroke width, ``2 * area / perimeter``: about 3 for a crack, large for a patch."""
    if not mask.any():
        return 0.0
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    return 2.0 * float(mask.sum()) / max(perimeter, 1.0)


def _grow(seeds: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """``seeds`` plus every connected part of ``allowed`` that touches them."""
    _, labels = cv2.connectedComponents(allowed.astype(np.uint8), connectivity=8)
    keep = np.unique(labels[seeds & allowed])
    return seeds | np.isin(labels, keep[keep > 0])
