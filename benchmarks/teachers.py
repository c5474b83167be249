"""Teacher quality and speed on the real datasets (boxes derived from the human masks).

For Magnetic Tile (every defect image with a usable mask) and CrackForest (every labelled image), each
teacher labels every box through the real runner (store, manifest, merge), and its merged masks are
scored against the human masks with the shared dataset-level confusion matrix (METHODS.md 1.6).

    python benchmarks/teachers.py [--teachers box,grabcut,contrast,contrast:on_empty=box,fusion]
        [--datasets magnetic_tile,crackforest]
        [--sam-checkpoint PATH] [--workers 1] [--json results.json]

Prints a Markdown table: binary IoU, recall, precision, anomaly mIoU, per-class IoU, images/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from weakseg.annotations.readers import load_annotations
from weakseg.annotations.schema import AnnotationSet
from weakseg.data.shared import shared_dataset
from weakseg.evaluation import evaluate_annotations
from weakseg.pseudolabel.runner import pseudo_label

VALUE_MAPS = {"crackforest": {2: "crack", 4: "crack"}}


def defect_images(name: str) -> AnnotationSet:
    """The dataset's images that carry human-mask instances (the boxes come from those masks)."""
    from weakseg.annotations.readers import ReadOptions

    path = shared_dataset(name)
    if path is None:
        sys.exit(f"shared dataset {name} not found (set WEAKSEG_DATA)")
    ann = load_annotations(path, options=ReadOptions(value_map=VALUE_MAPS.get(name)))
    images = [r for r in ann.images if r.annotated and r.instances]
    return AnnotationSet(ann.root, ann.class_map, images, ann.format)


def run(name: str, teacher: str, config: dict, workers: int) -> dict:
    gt = defect_images(name)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = pseudo_label(gt, teacher, Path(tmp) / "store", teacher_config=config, workers=workers)
        seconds = time.perf_counter() - start
        pred = load_annotations(Path(tmp) / "store" / "pseudo.json")
    evaluation = evaluate_annotations(pred, gt)
    m = evaluation.metrics
    return {
        "dataset": name,
        "teacher": teacher,
        "images": len(gt),
        "boxes": sum(len(r.instances) for r in gt),
        "binary_iou": m["binary_iou"],
        "binary_recall": m["binary_recall"],
        "binary_precision": m["binary_precision"],
        "anomaly_miou": m["anomaly_miou"],
        "per_class_iou": {c: v["iou"] for c, v in m["per_class"].items() if c != "background"},
        "images_per_s": len(gt) / seconds,
        "empty_masks": result.summary.get("empty_masks"),
        "mean_quality": result.summary.get("mean_quality"),
    }


def parse_spec(spec: str) -> tuple[str, dict]:
    """``contrast:on_empty=box,z_min=3`` -> ``("contrast", {"on_empty": "box", "z_min": 3})``."""
    import yaml

    name, _, options = spec.partition(":")
    config = {}
    for item in filter(None, options.split("+")):
        key, _, value = item.partition("=")
        config[key] = yaml.safe_load(value)
    return name, config


def markdown(rows: list[dict]) -> str:
    out = []
    for name in dict.fromkeys(r["dataset"] for r in rows):
        subset = [r for r in rows if r["dataset"] == name]
        classes = list(subset[0]["per_class_iou"])
        head = ["teacher", "binary IoU", "recall", "precision", "anomaly mIoU", *classes, "img/s", "empty"]
        out.append(f"\n**{name}** ({subset[0]['images']} images, {subset[0]['boxes']} boxes)\n")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for r in subset:
            cells = [r["teacher"]] + [
                f"{r[k]:.3f}" for k in ("binary_iou", "binary_recall", "binary_precision", "anomaly_miou")
            ]
            cells += [
                f"{r['per_class_iou'][c]:.3f}" if r["per_class_iou"][c] is not None else "-" for c in classes
            ]
            cells += [f"{r['images_per_s']:.1f}", str(r["empty_masks"])]
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--teachers",
        default="box,grabcut,contrast,contrast:on_empty=box,fusion",
        help="comma-separated teachers; options as NAME:KEY=VALUE+KEY=VALUE",
    )
    parser.add_argument("--datasets", default="magnetic_tile,crackforest")
    parser.add_argument("--sam-checkpoint", default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    teachers = args.teachers.split(";") if ";" in args.teachers else args.teachers.split(",")
    if args.sam_checkpoint:
        teachers.append("sam")
    rows = []
    for name in args.datasets.split(","):
        for spec in teachers:
            teacher, config = parse_spec(spec)
            if teacher == "sam":
                config["checkpoint"] = args.sam_checkpoint
            row = run(name, teacher, config, args.workers)
            row["teacher"] = spec
            print(
                f"{name} {teacher}: binary IoU {row['binary_iou']:.3f} ({row['images_per_s']:.1f} img/s)",
                file=sys.stderr,
            )
            rows.append(row)
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
