"""``student``: a trained student used as a teacher (``weakseg refine``: boxes in, masks out).

Per image the student runs on the image and, with ``tta`` (the default), on its horizontal mirror,
whose probabilities are flipped back and averaged in (the shared
:class:`~weakseg.inference.predictor.Predictor` path, so the run's validated decision applies). For
each box the mask is the student's **foreground probability** ``1 - P(background)`` restricted to the
box and thresholded. Foreground rather than the box's own class probability, because the box already
fixes the class: a defect pixel the student gives to the wrong defect class is still a defect pixel of
this box, and with several classes the per-class probability splits the foreground mass and would cut
such pixels out. ``probability="class"`` selects the box's class probability instead.

The threshold (``threshold``): ``"box"`` (the default) uses the box as a constraint, per box the
highest threshold, not above ``max_threshold`` (by default the run's validated decision threshold),
whose mask spans the box in x and in y (:mod:`weakseg.teachers.box_threshold`); a number is that fixed
threshold for every box. Confidence is the mean probability inside the mask (inside the box when empty).

Optional fusion with the teacher's masks (``pseudo=<store>``), before the threshold: per box,
``fused = (q_s * p_student + q_t * teacher_mask) / (q_s + q_t)``, with ``q_t`` the teacher instance's
quality score from the store and ``q_s`` = ``student_weight`` (default 1); the threshold (per box or
fixed) then applies to ``fused``. The teacher instance is found by image size, class and box (the
store copies the dataset's boxes); a box that is missing or ambiguous in the store uses the student
alone.

Every choice is in the teacher's config (and so in the store's hash), as is the run's decision file:
stores made with other settings, or from a recalibrated run, are not mixed on resume.

Torch is imported only when the first image is predicted, so registering this teacher is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from weakseg.teachers.base import Teacher, TeacherOutput, register_teacher
from weakseg.teachers.box_threshold import box_mask
from weakseg.teachers.refine import box_slices

PROBABILITIES = ("foreground", "class")
#: The per-box threshold mode of ``threshold`` (any number is a fixed threshold).
BOX_THRESHOLD = "box"
#: ``weakseg.training.calibrate.DECISION_FILE``, named here so that building the teacher needs no torch.

_BoxKey = tuple[int, int, int, tuple[float, float, float, float]]


def _box_key(shape: tuple[int, int], class_id: int, box: Any) -> _BoxKey:
    return (int(shape[0]), int(shape[1]), int(class_id), tuple(round(float(v), 2) for v in box))  # type: ignore[return-value]


def checkpoint_identity(path: Path) -> dict[str, Any]:
    """What tells one weights file from a retrained one, for a teacher's config (and the store's hash)."""
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def parse_threshold(value: float | str) -> float | str:
    """``"box"`` or a fixed threshold in (0, 1); the CLI and ``--set`` hand numbers over as text too."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == BOX_THRESHOLD:
            return BOX_THRESHOLD
        try:
            value = float(text)
        except ValueError:
            raise ValueError(
                f"threshold must be {BOX_THRESHOLD!r} or a number in (0, 1), got {value!r}"
            ) from None
    if isinstance(value, bool) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"threshold must be {BOX_THRESHOLD!r} or a number in (0, 1), got {value!r}")
    return float(value)


@register_teacher("student", help="a trained student run (run=RUN): refine boxes into masks")
class StudentTeacher(Teacher):
    def __init__(
        self,
        run: str,
        which: str = "best",
        threshold: float | str = BOX_THRESHOLD,
        probability: str = "foreground",
        pseudo: str | None = None,
        student_weight: float = 1.0,
        batch_size: int = 1,
        tta: bool = True,
        max_threshold: float | None = None,
    ) -> None:
        from weakseg.inference.run import load_run

        if probability not in PROBABILITIES:
            raise ValueError(f"probability must be one of {', '.join(PROBABILITIES)}, got {probability!r}")
        mode = parse_threshold(threshold)
        if max_threshold is not None:
            if mode != BOX_THRESHOLD:
                raise ValueError(
                    f"max_threshold caps threshold={BOX_THRESHOLD!r} only, not a fixed threshold"
                )
            if not 0.0 < float(max_threshold) < 1.0:
                raise ValueError(f"max_threshold must be in (0, 1), got {max_threshold}")
        info = load_run(run)
        checkpoint = info.checkpoint(which)
        self.run = str(Path(run).resolve())
        self.which = which
        self.threshold = mode
        self.max_threshold = None if max_threshold is None else float(max_threshold)
        self.tta = bool(tta)
        self.probability = probability
        self.pseudo = str(Path(pseudo).resolve()) if pseudo else None
        self.student_weight = float(student_weight)
        self.batch_size = int(batch_size)
        self._predictor: Any = None
        self._teacher_index: dict[_BoxKey, tuple[dict, float] | None] | None = None
        config: dict[str, Any] = {
            "run": self.run,
            "which": which,
            # a retrained run (new weights) must not reuse the old store's masks on resume
            "checkpoint": checkpoint_identity(checkpoint),
            # the decision sets the probabilities' head and the per-box cap: a recalibrated run
            # must not reuse an old store
            "decision": info.decision(),
            "threshold": self.threshold,
            "probability": probability,
            "tta": self.tta,
        }
        if self.max_threshold is not None:
            config["max_threshold"] = self.max_threshold
        if self.pseudo:
            config.update(pseudo=self.pseudo, student_weight=self.student_weight)
        super().__init__(**config)

    def __getstate__(self) -> dict[str, Any]:  # worker processes load their own model
        state = dict(self.__dict__)
        state["_predictor"] = None
        state["_teacher_index"] = None
        return state

    def _get_predictor(self) -> Any:
        if self._predictor is None:
            from weakseg.inference.predictor import Predictor

            self._predictor = Predictor(self.run, which=self.which, batch_size=self.batch_size)
        return self._predictor

    def _get_teacher_index(self) -> dict[_BoxKey, tuple[dict, float] | None]:
        if self._teacher_index is None:
            from weakseg.errors import DataError
            from weakseg.pseudolabel.store import load_pseudo

            assert self.pseudo is not None
            if not Path(self.pseudo).exists():
                raise DataError(self.pseudo, "teacher store does not exist")
            ann = load_pseudo(self.pseudo)
            index: dict[_BoxKey, tuple[dict, float] | None] = {}
            for record, inst in ann.instances():
                if inst.mask is None:
                    continue
                key = _box_key(record.size, inst.class_id, inst.box)
                quality = 1.0 if inst.score is None else float(inst.score)
                index[key] = None if key in index else (inst.mask, quality)  # None: ambiguous
            self._teacher_index = index
        return self._teacher_index

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """The student's ``(K+1, H, W)`` probabilities for ``image``; with ``tta`` the mean of the image's
        and its mirror's (flipped back), so a mirrored image gets exactly the mirrored probabilities."""
        predictor = self._get_predictor()
        if not self.tta:
            return predictor.probabilities([image])[0]
        mirrored = np.ascontiguousarray(np.flip(image, axis=1))
        prob, prob_mirrored = predictor.probabilities([image, mirrored])
        return 0.5 * (prob + np.flip(prob_mirrored, axis=-1))

    def cap(self) -> float:
        """The per-box threshold's ceiling: ``max_threshold``, else the run's validated threshold."""
        if self.max_threshold is not None:
            return self.max_threshold
        return float(self._get_predictor().threshold)

    def predict(self, image: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray) -> list[TeacherOutput]:
        prob = self.probabilities(image)
        cap = self.cap() if self.threshold == BOX_THRESHOLD else None
        shape = image.shape[:2]
        foreground = 1.0 - prob[0] if self.probability == "foreground" else None
        outputs = []
        for box, class_id in zip(boxes, class_ids, strict=True):
            p = foreground if foreground is not None else prob[int(class_id)]
            rows, cols = box_slices(tuple(box), shape)
            local = p[rows, cols].astype(np.float32)
            if self.pseudo:
                local = self._fuse(local, shape, int(class_id), box, rows, cols)
            if cap is not None:
                inside, _ = box_mask(local, cap)
            else:
                inside = local > float(self.threshold)
            mask = np.zeros(shape, dtype=bool)
            mask[rows, cols] = inside
            if inside.any():
                confidence = float(local[inside].mean())
            else:
                confidence = float(local.mean()) if local.size else 0.0
            outputs.append(TeacherOutput(mask, confidence))
        return outputs

    def _fuse(
        self, local: np.ndarray, shape: tuple[int, int], class_id: int, box: Any, rows: slice, cols: slice
    ) -> np.ndarray:
        from weakseg.annotations import masks as mask_ops

        found = self._get_teacher_index().get(_box_key(shape, class_id, box))
        if found is None:
            return local
        rle, quality = found
        if mask_ops.rle_size(rle) != tuple(shape):
            return local
        q_s, q_t = self.student_weight, max(0.0, quality)
        if q_s + q_t <= 0:
            return local
        teacher = mask_ops.decode(rle)[rows, cols].astype(np.float32)
        return (q_s * local + q_t * teacher) / (q_s + q_t)
