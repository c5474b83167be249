"""weakseg: turn cheap annotations into pixel-accurate defect segmentation.

The public API mirrors the command line one-to-one: ``weakseg doctor`` is :func:`weakseg.doctor`,
``weakseg convert`` is :func:`weakseg.convert`, and so on. Heavy modules load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "load_annotations": "weakseg.annotations.readers",
    "write_annotations": "weakseg.annotations.writers",
    "doctor": "weakseg.annotations.doctor",
    "convert": "weakseg.annotations.convert",
    "make_splits": "weakseg.annotations.splits",
    "generate_synthetic": "weakseg.data.synthetic",
    "demo": "weakseg.demo",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'weakseg' has no attribute {name!r}")
