"""Option parsing shared by the verbs that read a dataset."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from weakseg.annotations.readers import DEFAULT_NEGATIVE_NAMES, ReadOptions
from weakseg.errors import WeaksegError

FORMAT_HELP = "Input format: auto, coco, yolo, voc, masks, tags or bsds."
SPLITS_HELP = (
    "Split file (JSON {file: split}, or CSV lines file,split). Default: the dataset's own train/val/test "
    "folders or files, else a seeded 70/15/15 split."
)

FormatOpt = typer.Option("auto", "--format", "-f", help=FORMAT_HELP)
ClassesOpt = typer.Option(
    None,
    "--classes",
    help="Comma-separated class names in id order (YOLO, indexed masks). Default: the dataset's own "
    "(classes.txt, data.yaml, categories, folder names).",
)
MinAreaOpt = typer.Option(10, "--min-area", min=1, help="Drop mask components smaller than this many pixels.")
ValueMapOpt = typer.Option(
    None,
    "--value-map",
    help="Mask value(s) to class, e.g. '2,4=crack' (repeatable). Unlisted values are background. "
    "Default: value i is class i.",
)
NegativesOpt = typer.Option(
    None,
    "--negatives",
    help="Comma-separated folder names that hold defect-free images (folder-per-class layouts). Default: "
    + ", ".join(DEFAULT_NEGATIVE_NAMES)
    + " (any case).",
)
TagsOpt = typer.Option(
    None, "--tags", help="CSV of image-level tags (image,tags) to merge in. Default: none."
)


def parse_value_map(items: list[str] | None) -> dict[int, str] | None:
    """``['2,4=crack', '5=hole']`` -> ``{2: 'crack', 4: 'crack', 5: 'hole'}``."""
    if not items:
        return None
    mapping: dict[int, str] = {}
    for item in items:
        values, sep, name = item.partition("=")
        if not sep or not name.strip():
            raise WeaksegError(f"--value-map {item!r}: expected VALUE[,VALUE...]=NAME, e.g. '2,4=crack'")
        for value in values.split(","):
            try:
                mapping[int(value)] = name.strip()
            except ValueError:
                raise WeaksegError(f"--value-map {item!r}: {value!r} is not an integer mask value") from None
    return mapping


def read_options(
    classes: str | None,
    min_area: int,
    value_map: list[str] | None,
    negatives: str | None,
    tags: Path | None,
) -> ReadOptions:
    return ReadOptions(
        classes=tuple(c.strip() for c in classes.split(",") if c.strip()) if classes else None,
        min_area=min_area,
        value_map=parse_value_map(value_map),
        negative_names=(
            tuple(n.strip().lower() for n in negatives.split(",") if n.strip())
            if negatives
            else DEFAULT_NEGATIVE_NAMES
        ),
        tags_csv=tags,
    )


def parse_key_values(items: list[str] | None) -> dict[str, object]:
    """``['iterations=3', 'members=[box, contrast]']`` -> typed values (YAML scalars, never ``eval``)."""
    out: dict[str, object] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise WeaksegError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as exc:
            raise WeaksegError(f"--set {item!r}: cannot parse the value ({exc})") from None
    return out
