"""The ``weakseg`` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from weakseg import __version__
from weakseg.cli.options import (
    SPLITS_HELP,
    ClassesOpt,
    FormatOpt,
    MinAreaOpt,
    NegativesOpt,
    TagsOpt,
    ValueMapOpt,
    parse_key_values,
    read_options,
)
from weakseg.errors import (
    EXIT_DATA_ERROR,
    EXIT_INTERRUPTED,
    EXIT_PARTIAL,
    DataError,
    Interrupted,
    WeaksegError,
)

app = typer.Typer(
    name="weakseg",
    help="Cheap annotations (boxes, tags, a few masks) to pixel-accurate defect segmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
SHARD_HELP = "This worker's shard index (0-based). Default: the only shard, or every shard with --workers."
NUM_SHARDS_HELP = "Number of shards. Default: 1."
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


@app.command(short_help="Validate and summarise a dataset, every problem at once.")
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


@app.command(short_help="Convert a dataset to COCO, indexed mask PNGs or YOLO.")
def convert(
    data: Path = typer.Argument(..., help="Dataset folder or annotation file."),
    old_out: Path | None = typer.Argument(None, metavar="[OUT]", help="Deprecated spelling of --out."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output dataset folder (created atomically). Required."
    ),
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

    out = _moved(old_out, out, "OUT", "--out OUT")
    options = read_options(classes, min_area, value_map, negatives, tags)
    written = run_convert(data, to, out, format=format, options=options, overwrite=overwrite)
    out_console.print(f"wrote {to} dataset to {written}")


@app.command("list", short_help="List teachers, backbones or annotation formats.")
def list_(what: str = typer.Argument(..., help="What to list: teachers, backbones or formats.")) -> None:
    """List the registered teachers, student backbones or annotation formats."""
    if what == "teachers":
        from weakseg.teachers import teacher_names

        entries = teacher_names()
    elif what == "backbones":
        from weakseg.student.backbones import backbone_names

        entries = backbone_names()
    elif what == "formats":
        from weakseg.annotations.readers import reader_help

        entries = reader_help()
    else:
        raise WeaksegError(f"cannot list {what!r}; choose teachers, backbones or formats")
    table = Table(show_header=False, box=None)
    for name, text in entries.items():
        table.add_row(f"[bold]{escape(name)}[/bold]", escape(text))  # "[sam]" is an extra, not markup
    out_console.print(table)


@app.command("pseudo-label", short_help="Boxes to pseudo-masks with a teacher (sharded, resumable).")
def pseudo_label(
    data: Path = typer.Argument(..., help="Dataset folder or annotation file with boxes."),
    teacher: str = typer.Option("contrast", "--teacher", "-t", help="Teacher name (weakseg list teachers)."),
    out: Path = typer.Option(..., "--out", "-o", help="Pseudo-label store folder (resumed if it exists)."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes."),
    shard: int | None = typer.Option(None, "--shard", help=SHARD_HELP),
    num_shards: int | None = typer.Option(None, "--num-shards", help=NUM_SHARDS_HELP),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Model checkpoint (sam teacher). Default: none."
    ),
    set_: list[str] | None = typer.Option(
        None, "--set", help="Teacher option KEY=VALUE (repeatable). Default: the teacher's defaults."
    ),
    box_margin: int = typer.Option(0, "--box-margin", min=0, help="Clip masks to the box dilated by N px."),
    keep_gt_masks: bool = typer.Option(False, "--keep-gt-masks", help="Pass human masks through unchanged."),
    no_merge: bool = typer.Option(False, "--no-merge", help="Do not write pseudo.json at the end."),
    merge_only: bool = typer.Option(
        False, "--merge-only", help="Only merge finished shards into pseudo.json."
    ),
    skip_invalid: bool = typer.Option(
        False,
        "--skip-invalid",
        help="Leave out (and list) images that weakseg doctor finds invalid, instead of stopping; "
        f"the exit code is then {EXIT_PARTIAL} if any was left out.",
    ),
    format: str = FormatOpt,
    classes: str | None = ClassesOpt,
    min_area: int = MinAreaOpt,
    value_map: list[str] | None = ValueMapOpt,
    negatives: str | None = NegativesOpt,
    tags: Path | None = TagsOpt,
) -> None:
    """Turn every box into a pseudo-mask with a quality score (sharded, resumable)."""
    from weakseg.pseudolabel.runner import merge_store
    from weakseg.pseudolabel.runner import pseudo_label as run
    from weakseg.teachers.refine import RefineConfig

    options = read_options(classes, min_area, value_map, negatives, tags)
    if merge_only:
        summary = merge_store(data, out, format=format, options=options)
        out_console.print(f"merged {summary['images']} images into {out / 'pseudo.json'}")
        return
    config = parse_key_values(set_)
    if checkpoint is not None:
        config["checkpoint"] = str(checkpoint)
    result = run(
        data,
        teacher,
        out,
        teacher_config=config,
        format=format,
        options=options,
        refine=RefineConfig(box_margin=box_margin),
        keep_gt_masks=keep_gt_masks,
        workers=workers,
        shard=shard,
        num_shards=num_shards,
        merge=not no_merge,
        skip_invalid=skip_invalid,
        console=err_console,
    )
    for failure in result.failures:
        err_console.print(f"failed: {failure}", markup=False, highlight=False, soft_wrap=True)
    out_console.print(
        f"shard {result.shard.index}/{result.shard.count}: labelled {result.processed} images "
        f"({result.images_per_second:.1f} img/s), {result.skipped} already done, {result.failed} failed, "
        f"{result.invalid_images} invalid left out"
    )
    if result.merged is not None:
        s = result.summary
        out_console.print(
            f"merged {s['ok']} images, {s['instances']} masks ({s['empty_masks']} empty), "
            f"mean quality {s['mean_quality'] or 0:.3f} -> {result.merged}"
        )
    if result.invalid_images or result.failed:
        raise typer.Exit(EXIT_PARTIAL)


@app.command(short_help="Score a model, masks or predictions against human masks.")
def evaluate(
    target: Path = typer.Argument(
        ..., help="A training run, an .onnx model, a pseudo-label store or a predictions folder."
    ),
    data: Path | None = typer.Argument(None, help="Dataset with ground-truth masks."),
    old_data: Path | None = typer.Option(
        None, "--data", "-d", help="Deprecated spelling of DATA.", hidden=True
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Report folder. Default: TARGET/eval."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object."),
    worst: int = typer.Option(12, "--worst", min=0, help="Images in the gallery of worst cases."),
    eval_size: int | None = typer.Option(
        None, "--eval-size", help="Score at NxN (reference protocol: 518). Default: each image's own size."
    ),
    split: str | None = typer.Option(
        None,
        "--split",
        help="Runs: test, val, train or all (default: the run's test split when DATA is its dataset).",
    ),
    which: str = typer.Option("best", "--checkpoint", help="Runs: best, last or a .ckpt file."),
    teacher: Path | None = typer.Option(
        None, "--teacher", help="Runs: teacher store to compare with (default: the run's, from run.json)."
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Runs: images per forward pass."),
    format: str = FormatOpt,
    classes: str | None = ClassesOpt,
    min_area: int = MinAreaOpt,
    value_map: list[str] | None = ValueMapOpt,
    negatives: str | None = NegativesOpt,
    tags: Path | None = TagsOpt,
) -> None:
    """Score a run, an ONNX model, pseudo-masks or predictions (and a model's teacher) against human masks."""
    from weakseg.cli.tables import format_metrics_table
    from weakseg.evaluate import evaluate as run

    data = _moved(old_data, data, "--data DATA", "DATA (after TARGET)", required="DATA")
    options = read_options(classes, min_area, value_map, negatives, tags)
    output = run(
        target,
        data,
        out=out,
        format=format,
        options=options,
        worst=worst,
        eval_size=eval_size,
        split=split,
        which=which,
        teacher=teacher,
        batch_size=batch_size,
    )
    if as_json:
        sys.stdout.write(json.dumps(output.to_dict(), indent=2) + "\n")
        return
    for warning in output.warnings:
        err_console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    out_console.print(format_metrics_table(output.result, output.title))
    if output.kind == "model":
        if output.teacher is not None:
            out_console.print(format_metrics_table(output.teacher, "teacher (same images)"))
            _print_gain((output.comparison or {}).get("gain") or {})
        elif output.teacher_note:
            err_console.print(output.teacher_note, markup=False, highlight=False)
    out_console.print(f"reports: {output.files['metrics'].parent}")
    out_console.print(f"report: {output.files['report']}", markup=False, highlight=False, soft_wrap=True)


def _print_gain(gain: dict) -> None:
    table = Table(title="student gain over its teacher", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("student - teacher", justify="right")
    for key, value in gain.items():
        table.add_row(key.replace("_", " "), "n/a" if value is None else f"{value:+.4f}")
    out_console.print(table)


@app.command(short_help="Predict masks with a trained student or an ONNX model.")
def predict(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="Run folder, or an exported .onnx file."),
    images: Path = typer.Argument(..., help="An image, a folder of images (recursive) or a dataset."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (masks/, overlays/, predictions.json)."),
    which: str = typer.Option("best", "--checkpoint", help="best, last or a .ckpt file."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images per forward pass."),
    min_area: int = typer.Option(0, "--min-area", min=0, help="Drop predicted components below N pixels."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
    format: str = FormatOpt,
    gate: Path | None = typer.Option(
        None,
        "--gate",
        help="A tag-classifier run (train-classifier): images it calls defect-free get no mask. "
        "Default: none.",
    ),
    gate_threshold: float = typer.Option(0.5, "--gate-threshold", help="Class probability the gate needs."),
) -> None:
    """Predict masks with a trained student: indexed PNGs, overlays and COCO RLE instances."""
    from weakseg.errors import DataError
    from weakseg.inference.predict import predict as run

    result = run(
        run_dir,
        images,
        out,
        which=which,
        batch_size=batch_size,
        min_area=min_area,
        overwrite=overwrite,
        format=format,
        gate=gate,
        gate_threshold=gate_threshold,
    )
    out_console.print(f"predicted {result.images} images, {result.instances} instances -> {result.out}")
    if result.failed:
        for path, problem in result.failed:
            err_console.print(f"skipped: {path}: {problem}", markup=False, highlight=False)
        first = result.failed[0]
        more = f" (and {len(result.failed) - 1} more)" if len(result.failed) > 1 else ""
        raise DataError(first[0], f"{first[1]}{more}; the other images were predicted")


@app.command(short_help="Boxes to masks with a trained student (a pseudo-label store).")
def refine(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="Training run folder (the student)."),
    data: Path = typer.Argument(..., help="Dataset with boxes (the same images get masks)."),
    out: Path = typer.Option(..., "--out", "-o", help="Pseudo-label store to write (resumed if it exists)."),
    which: str = typer.Option("best", "--checkpoint", help="best, last or a .ckpt file."),
    threshold: str = typer.Option(
        "box",
        "--threshold",
        help="box: per box, the highest threshold (up to --max-threshold) whose mask spans the box in x "
        "and y; or a number: that fixed probability threshold in every box.",
    ),
    max_threshold: float | None = typer.Option(
        None,
        "--max-threshold",
        min=0.0,
        max=1.0,
        help="Ceiling of the per-box threshold (default: the run's validated decision threshold).",
    ),
    tta: bool = typer.Option(
        True, "--tta/--no-tta", help="Average the student's probabilities with the mirrored image's."
    ),
    probability: str = typer.Option(
        "foreground", "--probability", help="foreground (1 - P(background)) or class (the box's class)."
    ),
    pseudo: Path | None = typer.Option(
        None,
        "--pseudo",
        help="Teacher store: fuse its masks with the student's by quality. Default: the student alone.",
    ),
    student_weight: float = typer.Option(1.0, "--student-weight", min=0.0, help="Student weight in fusion."),
    box_margin: int = typer.Option(0, "--box-margin", min=0, help="Clip masks to the box dilated by N px."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes."),
    shard: int | None = typer.Option(None, "--shard", help=SHARD_HELP),
    num_shards: int | None = typer.Option(None, "--num-shards", help=NUM_SHARDS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the summary and scores as one JSON object."),
    format: str = FormatOpt,
    classes: str | None = ClassesOpt,
    min_area: int = MinAreaOpt,
    value_map: list[str] | None = ValueMapOpt,
    negatives: str | None = NegativesOpt,
    tags: Path | None = TagsOpt,
) -> None:
    """Boxes in, masks out: the student refines every box into a pseudo-label store (retrain on it)."""
    from weakseg.cli.tables import format_metrics_table
    from weakseg.inference.refine import compare_with_teacher
    from weakseg.inference.refine import refine as run
    from weakseg.inference.run import load_run
    from weakseg.teachers.refine import RefineConfig

    options = read_options(classes, min_area, value_map, negatives, tags)
    result = run(
        run_dir,
        data,
        out,
        which=which,
        threshold=threshold,
        max_threshold=max_threshold,
        tta=tta,
        probability=probability,
        pseudo=pseudo,
        student_weight=student_weight,
        format=format,
        options=options,
        refine_config=RefineConfig(box_margin=box_margin),
        workers=workers,
        shard=shard,
        num_shards=num_shards,
        console=err_console,
    )
    scores = None
    if result.merged is not None:
        teacher = pseudo if pseudo is not None else load_run(run_dir).pseudo_path()
        if teacher is not None and not teacher.exists():
            teacher = None
        scores = compare_with_teacher(out, data, teacher, format=format, options=options)
    if as_json:
        merged = str(result.merged) if result.merged else None
        doc = {"store": str(result.store), "merged": merged, "summary": result.summary}
        if scores is not None:
            doc.update({k: scores[k] for k in ("refined", "teacher", "gain")})
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    out_console.print(
        f"shard {result.shard.index}/{result.shard.count}: refined {result.processed} images "
        f"({result.images_per_second:.1f} img/s), {result.skipped} already done, {result.failed} failed"
    )
    if scores is not None:
        out_console.print(format_metrics_table(scores["refined_result"], "refined masks vs human masks"))
        if scores["teacher_result"] is not None:
            out_console.print(format_metrics_table(scores["teacher_result"], "teacher masks (same images)"))
            _print_gain(scores["gain"] or {})
    if result.merged is not None:
        out_console.print(f"store: {result.merged} (train on it with --pseudo {out})")


@app.command(name="train", short_help="Train the student on pseudo-masks or human masks.")
def train_(
    data: Path = typer.Argument(..., help="Dataset (images; its splits are made and kept in the run)."),
    old_overrides: list[str] | None = typer.Argument(
        None, metavar="[KEY=VALUE]...", help="Deprecated spelling of --set KEY=VALUE.", show_default=False
    ),
    pseudo: Path = typer.Option(..., "--pseudo", help="Pseudo-label store, or a dataset with human masks."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder."),
    config_file: Path | None = typer.Option(
        None, "--config", help="YAML settings, as in config.yaml. Default: none (the built-in defaults)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue OUT from weights/last.ckpt."),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Feature cache; runs on the same images may share it. Default: OUT/cache."
    ),
    backbone: str | None = typer.Option(
        None, "--backbone", help="Backbone (weakseg list backbones). Default: lite0."
    ),
    weights: str | None = typer.Option(
        None,
        "--weights",
        help="Backbone weights: default (packaged ImageNet), none or a file. Default: default.",
    ),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Training epochs. Default: 12."),
    size: int | None = typer.Option(
        None,
        "--size",
        min=32,
        help="Training canvas (square), pixels; images keep their aspect. Default: 320.",
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Images per step. Default: 8."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (AdamW, cosine). Default: 0.002."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the split and the training. Default: 0."),
    devices: int | None = typer.Option(
        None, "--devices", min=1, help="Processes (DDP ranks) per node. Default: 1."
    ),
    num_nodes: int | None = typer.Option(
        None, "--num-nodes", min=1, help="Nodes (multi-node DDP). Default: 1."
    ),
    strategy: str | None = typer.Option(None, "--strategy", help="auto or ddp. Default: auto."),
    splits: Path | None = typer.Option(None, "--splits", help=SPLITS_HELP),
    settings: list[str] | None = typer.Option(
        None, "--set", help="Any setting as KEY=VALUE (repeatable), e.g. --set loss.tau=0.8. Default: none."
    ),
    verbose: bool = typer.Option(False, "--verbose", help="Also show Lightning's own messages and warnings."),
) -> None:
    """Train the student on pseudo-masks (or human masks: the fully supervised ceiling).

    Settings come from the defaults, then --config, then the options above, then key=value overrides;
    the run keeps the resolved result in OUT/config.yaml. --resume reads that file back.
    """
    from weakseg.training.config import load_config
    from weakseg.training.train import train as run

    flags = {
        "backbone": backbone,
        "backbone_weights": None if weights == "none" else weights,
        "size": None if size is None else [size, size],
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "devices": devices,
        "num_nodes": num_nodes,
        "strategy": strategy,
    }
    flags = {k: v for k, v in flags.items() if v is not None or (k == "backbone_weights" and weights)}
    run_file = resume and config_file is None and (out / "config.yaml").is_file()
    if run_file:
        config_file = out / "config.yaml"
    if old_overrides:
        _deprecated("KEY=VALUE after DATA", "--set KEY=VALUE")
    overrides = [*(old_overrides or []), *(settings or [])]
    config = load_config(config_file, overrides, flags, run_file=run_file)
    result = run(
        data,
        pseudo,
        out,
        config,
        resume=resume,
        cache_dir=cache_dir,
        splits_file=splits,
        console=err_console,
        verbose=verbose,
    )
    score = result[f"best_val_{config.monitor}"]
    out_console.print(
        f"best val {config.monitor} {score or 0:.3f} after {result['epochs']} epochs; "
        f"weights in {out / 'weights'}"
    )


@app.command(name="train-classifier", short_help="Train the tag classifier the CAM teachers explain.")
def train_classifier(
    data: Path = typer.Argument(
        ..., help="Dataset with image-level tags (a tags CSV or folder per class), boxes or masks."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder."),
    resume: bool = typer.Option(False, "--resume", help="Continue OUT from weights/last.ckpt."),
    backbone: str | None = typer.Option(None, "--backbone", help="Backbone. Default: lite0."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Training epochs. Default: 12."),
    size: int | None = typer.Option(None, "--size", min=32, help="Canvas (square), pixels. Default: 256."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Images per step. Default: 16."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (AdamW, cosine). Default: 0.001."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the split and the training. Default: 0."),
    splits: Path | None = typer.Option(None, "--splits", help=SPLITS_HELP),
    settings: list[str] | None = typer.Option(
        None,
        "--set",
        help="Any setting as KEY=VALUE (repeatable), e.g. --set negatives=false. Default: none.",
    ),
    verbose: bool = typer.Option(False, "--verbose", help="Also show Lightning's own messages and warnings."),
) -> None:
    """Multi-label classifier (one sigmoid per defect class, defect-free images as negatives).

    Tags are the dataset's own (tags CSV, folder per class with ok/good/free folders as negatives) or
    derived from its boxes and masks. Prints and writes (OUT/metrics.json) the test split's image-level
    accuracy, per-class AUROC and F1. Next:
    weakseg pseudo-label DATA --teacher region-cam --set classifier=OUT.
    """
    import yaml

    from weakseg.training.classifier import ClassifierTrainConfig, classifier_config
    from weakseg.training.classifier import train_classifier as run

    flags = {"backbone": backbone, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed}
    flags = {k: v for k, v in flags.items() if v is not None}
    if size is not None:
        flags["size"] = [size, size]
    if resume and (out / "config.yaml").is_file():
        stored = ClassifierTrainConfig.from_dict(yaml.safe_load((out / "config.yaml").read_text()) or {})
        flags = {**stored.to_dict(), **flags}
    config = classifier_config(settings or [], flags)
    result = run(data, out, config, resume=resume, splits_file=splits, console=err_console, verbose=verbose)
    scores = result["test"] or result["val"]
    which = "test" if result["test"] else "val (no test split)"
    auroc = ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} -" for k, v in scores["auroc"].items())
    f1 = ", ".join(f"{k} {v:.3f}" for k, v in scores["f1"].items())
    out_console.print(
        f"{which}: {scores['images']} images, accuracy {scores['accuracy']:.3f}; AUROC {auroc}; F1 {f1}; "
        f"defect images caught {scores['defect_images_caught']}/{scores['defect_images']}, "
        f"OK images flagged {scores['ok_images_flagged']}/{scores['ok_images']}; "
        f"weights in {out / 'weights'}",
        highlight=False,
    )


@app.command(short_help="Export a trained student to ONNX.")
def export(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="Training run folder."),
    onnx: Path | None = typer.Option(
        None, "--out", "-o", help="Output .onnx file (its metadata goes beside it as .json). Required."
    ),
    old_onnx: Path | None = typer.Option(None, "--onnx", help="Deprecated spelling of --out.", hidden=True),
    which: str = typer.Option("best", "--checkpoint", help="best, last or a .ckpt file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing .onnx file."),
) -> None:
    """Export the student to ONNX (probabilities out; pre/post-processing policy in OUT.json)."""
    from weakseg.deploy.onnx import export_onnx, metadata_path

    onnx = _moved(old_onnx, onnx, "--onnx FILE", "--out FILE", required="--out")
    if onnx.exists() and not overwrite:
        raise DataError(onnx, "already exists; pass --overwrite to replace it")
    meta = export_onnx(run_dir, onnx, which=which)
    h, w = meta["input"]["size"]
    out_console.print(f"exported {onnx} (input Bx3x{h}x{w}, RGB in [0, 1]) and {metadata_path(onnx)}")


@app.command(short_help="Every teacher, student and baseline on one test split.")
def benchmark(
    data: Path = typer.Argument(..., help="Dataset with human masks (boxes are derived from them)."),
    out: Path = typer.Option(..., "--out", "-o", help="Benchmark folder; an interrupted run resumes in it."),
    teachers: str = typer.Option("box,contrast,grabcut", "--teachers", help="Comma-separated teachers."),
    backbone: str = typer.Option("lite0", "--backbone", help="Backbone of every student."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split (and of every run, unless --seeds)."),
    seeds: str | None = typer.Option(
        None,
        "--seeds",
        help="Comma-separated training seeds, e.g. 0,1,2: every training row is trained once per seed on "
        "the one split of --seed, and scores are reported as mean (min-max). Default: --seed's value.",
    ),
    rounds: int = typer.Option(
        1, "--rounds", min=1, help="Refine -> retrain rounds (1: the student refines once, no retraining)."
    ),
    rows: str | None = typer.Option(
        None,
        "--rows",
        help="Comma-separated row keys to run (and the rows they need), e.g. "
        "supervised,student,mean-teacher. "
        "Default: every row.",
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", min=1, help="Training epochs of every run. Default: train's (12)."
    ),
    size: int | None = typer.Option(
        None, "--size", min=32, help="Training size (square canvas). Default: train's (320)."
    ),
    settings: list[str] | None = typer.Option(
        None,
        "--set",
        help="KEY=VALUE training setting for every run (repeatable), after the benchmark's own. "
        "Default: none.",
    ),
    splits: Path | None = typer.Option(None, "--splits", help=SPLITS_HELP),
    supervision: str = typer.Option(
        "boxes",
        "--supervision",
        help="Routes to compare: boxes, tags (image-level tags: classifier, CAM teachers, self-training "
        "rounds, with the student on human masks), or boxes,tags side by side.",
    ),
    tag_rounds: int | None = typer.Option(
        None, "--tag-rounds", min=1, help="Self-training rounds of the tags route. Default: 3."
    ),
    classifier_settings: list[str] | None = typer.Option(
        None,
        "--classifier-set",
        help="KEY=VALUE setting of the tags route's classifier (repeatable; see train-classifier --set). "
        "Default: none.",
    ),
) -> None:
    """Teachers, refined masks and rounds, the student and its ablations, U-Nets and the ceilings.

    Every row is scored on the same seeded test split; writes results.json, results.csv, table.md and
    report.html into OUT. Row keys for --rows: student, mean-teacher, no-self-correction,
    no-binary-head, no-detail-branch, unet, unet-finetuned, supervised, unet-finetuned-supervised,
    refined-student, refined-student-fixed, refined-student-fused, refined-supervised, and with
    --rounds N >= 2 refined-round1..N and student-round2..N. --supervision tags adds the image-level
    tags route (every CAM teacher's pseudo-masks with its ablations, and each self-training round).
    """
    from weakseg.benchmark import benchmark as run
    from weakseg.benchmark.plan import parse_rows, parse_seeds
    from weakseg.benchmark.runner import metrics_table

    names = tuple(t.strip() for t in teachers.split(",") if t.strip())
    if not names and "boxes" in supervision:
        raise WeaksegError("--teachers: name at least one teacher (see: weakseg list teachers)")
    output = run(
        data,
        out,
        teachers=names,
        backbone=backbone,
        seed=seed,
        epochs=epochs,
        size=size,
        settings=settings,
        seeds=parse_seeds(seeds, seed),
        rounds=rounds,
        rows=parse_rows(rows),
        splits_file=splits,
        supervision=tuple(t.strip() for t in supervision.split(",") if t.strip()),
        tag_rounds=tag_rounds,
        classifier_settings=tuple(classifier_settings or ()),
    )
    table = metrics_table(output.rows, list(output.rows[0].result.class_names[1:]))
    out_console.print(table, markup=False, highlight=False, soft_wrap=True)
    for key, value in output.comparisons.items():
        spread = output.comparisons_spread.get(key)
        if isinstance(spread, dict) and not any(v is not None for v in spread.values()):
            spread = None
        out_console.print(
            f"{key}: {value}" + (f" (min-max {spread})" if spread else ""), markup=False, highlight=False
        )
    out_console.print(f"wall time {output.wall_seconds / 60:.1f} min; report: {output.files['report']}")


@app.command(short_help="The whole journey on a synthetic set, in about a minute.")
def demo(
    out: Path = typer.Option(
        Path("weakseg-demo"), "--out", "-o", help="Folder for the demo's data and results."
    ),
    n_images: int | None = typer.Option(
        None, "--images", min=4, help="Synthetic images to generate. Default: the demo's (80)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic set."),
    epochs: int | None = typer.Option(
        None, "--epochs", min=1, help="Student training epochs. Default: the demo's (30)."
    ),
) -> None:
    """Run the weakseg journey on a synthetic defect set the project generates itself."""
    from weakseg.demo import demo as run_demo

    sizes = {k: v for k, v in (("n_images", n_images), ("epochs", epochs)) if v is not None}
    run_demo(out, seed=seed, console=out_console, **sizes)


def _deprecated(old: str, new: str) -> None:
    err_console.print(f"note: {old} is deprecated; write {new}", markup=False, highlight=False)


def _moved(old: Path | None, new: Path | None, old_name: str, new_name: str, required: str | None = None):
    """The value of an option whose spelling changed: the new one, else the old one with a note."""
    if old is not None and new is not None and old != new:
        raise WeaksegError(f"give {new_name} once (not also the deprecated {old_name})")
    if old is not None:
        _deprecated(old_name, new_name)
        return old
    if new is None:
        raise WeaksegError(f"missing {required or new_name}")
    return new


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
        counts = ", ".join(f"{split} {n}" for split, n in sorted(s.get("splits", {}).items()))
        table.add_row("splits", f"{counts} ({s['split_source']})" if counts else s["split_source"])
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
    except Interrupted as exc:
        err_console.print(f"interrupted: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(EXIT_INTERRUPTED)
    except WeaksegError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(EXIT_DATA_ERROR)
