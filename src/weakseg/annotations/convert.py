"""``weakseg convert``: any supported format to COCO (RLE), indexed mask PNGs or YOLO segmentation.

The input is validated in full before anything is written: a dataset with errors produces no output.
"""

from __future__ import annotations

from pathlib import Path

from weakseg.annotations.readers import ReadOptions, load_annotations
from weakseg.annotations.validate import validate
from weakseg.annotations.writers import write_annotations, writer_names
from weakseg.errors import DataError, IssueLog


def convert(
    data: str | Path,
    to: str,
    out: str | Path,
    *,
    format: str = "auto",
    options: ReadOptions | None = None,
    overwrite: bool = False,
) -> Path:
    """Read ``data``, check it, and write it as a ``to`` dataset folder at ``out``."""
    if to not in writer_names():
        raise DataError(out, f"unknown output format {to!r}; choose one of: {', '.join(writer_names())}")
    issues = IssueLog()
    ann = load_annotations(data, format, options, issues)
    validate(ann, issues)
    issues.raise_errors()
    return write_annotations(ann, to, out, overwrite=overwrite)
