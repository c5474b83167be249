"""Cheap labels in: the annotation model, readers, writers, validation, conversion and splits."""

from weakseg.annotations.readers import ReadOptions, detect_format, load_annotations
from weakseg.annotations.schema import AnnotationSet, ClassMap, ImageRecord, Instance
from weakseg.annotations.writers import write_annotations

__all__ = [
    "AnnotationSet",
    "ClassMap",
    "ImageRecord",
    "Instance",
    "ReadOptions",
    "detect_format",
    "load_annotations",
    "write_annotations",
]
