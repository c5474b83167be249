"""Teachers: turn each box into a noisy pseudo-mask with an honest quality score.

One registry, one door (:func:`create_teacher`), as in timm. Built-in teachers: ``box``,
``grabcut``, ``contrast``, ``sam`` and ``fusion``.
"""

from weakseg.teachers.base import (
    PseudoMask,
    Teacher,
    TeacherOutput,
    create_teacher,
    register_teacher,
    teacher_names,
)

__all__ = ["PseudoMask", "Teacher", "TeacherOutput", "create_teacher", "register_teacher", "teacher_names"]
