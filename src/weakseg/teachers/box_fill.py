"""``box``: the pseudo-mask is the box itself. The baseline every method must beat."""

from __future__ import annotations

import numpy as np

from weakseg.teachers.base import Teacher, TeacherOutput, register_teacher
from weakseg.teachers.refine import box_slices

#: The box teacher knows nothing about the pixels; its confidence says so.
BOX_CONFIDENCE = 0.5


@register_teacher("box", help="fill each box (baseline)")
class BoxFillTeacher(Teacher):
    def predict(self, image: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray) -> list[TeacherOutput]:
        shape = image.shape[:2]
        outputs = []
        for box in boxes:
            mask = np.zeros(shape, dtype=bool)
            mask[box_slices(tuple(box), shape)] = True
            outputs.append(TeacherOutput(mask, BOX_CONFIDENCE))
        return outputs
