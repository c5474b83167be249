"""Teachers: turn each box into a noisy pseudo-mask with an honest quality score.

One registry, one door (:func:`create_teacher`), as in timm. Built-in teachers: ``box``,
``grabcut``, ``contrast``, ``sam`` and ``fusion``; from image-level tags, the CAM family (``cam``,
``gradcam``, ``gradcam++``, ``layercam``, ``region-cam``) and ``student-tags`` (a student re-labelling its
training images, for self-training rounds), registered from :mod:`weakseg.inference`.
"""

from weakseg.teachers.base import (
    PseudoMask,
    TagMask,
    TagTeacher,
    Teacher,
    TeacherOutput,
    create_teacher,
    register_teacher,
    teacher_names,
)

__all__ = [
    "PseudoMask",
    "TagMask",
    "TagTeacher",
    "Teacher",
    "TeacherOutput",
    "create_teacher",
    "register_teacher",
    "teacher_names",
]
