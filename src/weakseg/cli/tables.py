"""Console tables of an evaluation (rich): what ``weakseg evaluate`` and ``refine`` print."""

from __future__ import annotations

from rich.table import Table

from weakseg.evaluation.scoring import EvaluationResult


def _num(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary_table(result: EvaluationResult, title: str | None = None) -> Table:
    m, c = result.metrics, result.counts
    table = Table(title=title or "Evaluation", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, key in (
        ("mIoU (with background)", "miou"),
        ("anomaly mIoU", "anomaly_miou"),
        ("anomaly F1", "anomaly_f1"),
        ("binary IoU", "binary_iou"),
        ("binary recall", "binary_recall"),
        ("binary precision", "binary_precision"),
        ("binary F1", "binary_f1"),
    ):
        table.add_row(label, _num(m.get(key)))
    for label, key in (
        ("images scored", "images_scored"),
        ("skipped: box-only GT", "skipped_no_mask"),
        ("skipped: unannotated", "skipped_unannotated"),
        ("missing predictions", "missing_predictions"),
    ):
        table.add_row(label, str(c.get(key, 0)))
    return table


def class_table(result: EvaluationResult) -> Table:
    table = Table(title="Per class", show_header=True, header_style="bold")
    for name, justify in (
        ("class", "left"),
        ("IoU", "right"),
        ("recall", "right"),
        ("precision", "right"),
        ("F1", "right"),
        ("GT px", "right"),
        ("pred px", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name, row in result.metrics["per_class"].items():
        table.add_row(
            f"{row['id']} {name}",
            _num(row["iou"]),
            _num(row["recall"]),
            _num(row["precision"]),
            _num(row["f1"]),
            str(row["gt_pixels"]),
            str(row["pred_pixels"]),
        )
    return table


def format_metrics_table(result: EvaluationResult, title: str | None = None) -> Table:
    """A rich renderable for the CLI: the summary table above the per-class table."""
    grid = Table.grid(padding=(1, 0))
    grid.add_column()
    grid.add_row(summary_table(result, title))
    grid.add_row(class_table(result))
    return grid
