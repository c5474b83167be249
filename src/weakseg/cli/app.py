"""The ``weakseg`` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from weakseg import __version__
from weakseg.cli.options import (
    ClassesOpt,
    FormatOpt,
    MinAreaOpt,
    NegativesOpt,
    TagsOpt,
    ValueMapOpt,
    read_options,
)
from weakseg.errors import EXIT_DATA_ERROR, WeaksegError

app = typer.Typer(
    name="weakseg",
    help="Cheap annotations (boxes, tags, a few masks) to pixel-accurate defect segmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out_console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        out_console.print(f"weakseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Cheap annotations (boxes, tags, a few masks) to pixel-accurate defect segmentation."""


@app.command()
def doctor(
    data: Path = typer.Argument(..., help="Dataset folder or annotation file."),
    format: str = FormatOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    classes: str | None = ClassesOpt,
    min_area: int = MinAreaOpt,
    value_map: list[str] | None = ValueMapOpt,
    negatives: str | None = NegativesOpt,
    tags: Path | None = TagsOpt,
    quick: bool = typer.Option(
        False, "--quick", help="Read image headers only (skips the truncation check)."
    ),
) -> None:
    """Validate and summarise a dataset; list every problem at once (exit 2 if any is an error)."""
    from weakseg.annotations.doctor import doctor as run_doctor

    options = read_options(classes, min_area, value_map, negatives, tags)
    report = run_doctor(data, format, options, decode_images=not quick)
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(EXIT_DATA_ERROR)


@app.command()
def convert(
    data: Path = typer.Argument(..., help="Dataset folder or annotation file."),
    out: Path = typer.Argument(..., help="Output dataset folder (created atomically)."),
    to: str = typer.Option(..., "--to", help="Output format: coco, masks or yolo."),
    format: str = FormatOpt,
    classes: str | None = ClassesOpt,
    min_area: int = MinAreaOpt,
    value_map: list[str] | None = ValueMapOpt,
    negatives: str | None = NegativesOpt,
    tags: Path | None = TagsOpt,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
) -> None:
    """Convert a dataset to COCO (RLE masks), indexed mask PNGs or YOLO segmentation."""
    from weakseg.annotations.convert import convert as run_convert

    options = read_options(classes, min_area, value_map, negatives, tags)
    written = run_convert(data, to, out, format=format, options=options, overwrite=overwrite)
    out_console.print(f"wrote {to} dataset to {written}")


@app.command()
def demo(
    out: Path = typer.Option(Path("weakseg-demo"), "--out", help="Folder for the demo's data and results."),
    n_images: int = typer.Option(48, "--images", min=4, help="Synthetic images to generate."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic set."),
) -> None:
    """Run the weakseg journey on a synthetic defect set the project generates itself."""
    from weakseg.demo import demo as run_demo

    run_demo(out, n_images=n_images, seed=seed, console=out_console)


def _print_report(report) -> None:
    s = report.summary
    if s:
        table = Table(title=f"{report.path} ({report.format})", show_header=False)
        for key in (
            "images",
            "annotated_images",
            "unannotated_images",
            "negative_images",
            "instances",
            "masks",
            "tagged_images",
        ):
            table.add_row(key.replace("_", " "), str(s[key]))
        table.add_row("width range", "-".join(map(str, s["width_range"])))
        table.add_row("height range", "-".join(map(str, s["height_range"])))
        out_console.print(table)
        classes = Table(title="per class")
        for col in ("class", "id", "instances", "masks", "images", "tagged images"):
            classes.add_column(col, justify="left" if col == "class" else "right")
        for name, d in s["per_class_detail"].items():
            classes.add_row(
                name,
                str(d["id"]),
                str(d["instances"]),
                str(d["masks"]),
                str(d["images"]),
                str(d["tagged_images"]),
            )
        out_console.print(classes)
    for issue in report.issues:
        style = "red" if issue.level == "error" else "yellow"
        err_console.print(f"[{style}]{issue}[/{style}]", markup=True, highlight=False, soft_wrap=True)
    n_err, n_warn = len(report.issues.errors), len(report.issues.warnings)
    verdict = "[green]ok[/green]" if report.ok else "[red]problems found[/red]"
    out_console.print(f"{verdict}: {n_err} error(s), {n_warn} warning(s)")


def main() -> None:
    """Entry point: data problems print one clear message and exit with code 2."""
    try:
        app()
    except WeaksegError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(EXIT_DATA_ERROR)
