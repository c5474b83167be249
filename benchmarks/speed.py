"""How the pipeline's time and memory grow with the number of images (teachers, training, inference).

For each N in ``--sizes``, N images are drawn from the dataset (one seeded permutation of the images
sorted by file name; the first N of it, so the subsets are nested) and written as a COCO file of that
subset (``work/n<N>/subset.json``) whose ``weakseg.image_root`` points at the original images: no image
is copied, and every stage reads the subset exactly as the CLI would read a dataset. Then, each stage in
its own process (``python benchmarks/speed.py --stage ...``) so that its peak memory is its own:

1. **Teacher labelling**: ``pseudo_label`` with the ``box`` and ``contrast`` teachers into a fresh store
   (read the subset, label every box, write, merge). ``box img/s`` / ``contrast img/s`` = N / median
   wall seconds of the whole call, fixed costs included (``results.json`` also has ``*_loop_img_s``:
   the labelling loop alone). The repeats run in one process, each into a new store.
2. **Training** (``train()`` on the contrast teacher's masks, ``--epochs`` epochs at ``--size``, batch 8,
   ``seed=--seed``), with the feature cache and without it (``feature_cache=false``: the frozen backbone
   runs on every batch). ``epoch s`` = ``epoch_seconds`` from the run's ``metrics.csv`` (the training
   loop alone, no validation), median over the epochs of a run, then median over the repeats;
   ``online/cached`` = the ratio of those two medians. ``cache build s``: the wall time of the cache
   builds inside that very ``train()`` call (the train cache, all images x both flips, and the val
   cache, one flip): the child process wraps ``FeatureCache.build`` with a timer, so what is timed is
   the build training really does (reading and resizing the images included, the backbone's weights
   loading not), not a replica of it. Every repeat is a fresh process and a fresh run folder with an
   empty cache, cached and online repeats alternating, so load drift hits both alike.
3. **Inference**: ``Predictor`` of the first cached run, ``predict_set`` over the N images (read the
   image, resize, forward in batches of 8, probabilities back to the original size, instances), after
   one warm-up batch. ``predict img/s`` = N / median seconds of a pass over the N images.
4. **Peak memory**: ``ru_maxrss`` of each stage's process at its end (MB), median over the repeats for
   training (``train RSS``: cached; ``online RSS``: without the cache). A memory-mapped feature cache
   counts where its pages are resident.

The growth table gives, per stage, milliseconds per image at each N, the time ratio t(N)/t(N0)
against the smallest N (linear growth = N/N0: 2.0 and 4.0 for the default sizes) and the exponent k of
a least-squares fit t ~ N^k on log-log axes (k = 1: linear, k < 1: fixed costs still weigh); its last
row is the cached training's peak RSS itself (MB at each N, its ratio and exponent). For the epochs,
"per image" divides by N, though an epoch only sees the train split (about 70% of N). Every number and
ratio comes from this one run on this machine.

    python benchmarks/speed.py [--data PATH | --synthetic] [--sizes 100,200,400] [--size 256]
        [--epochs 2] [--repeats 3] [--seed 0] [--threads T] [--out bench/speed] [--keep]
        [--set key=value ...]
    python benchmarks/speed.py --quick --synthetic --out /tmp/speed-smoke   # smoke test, ~2 min

Data: ``--data``, else the shared Magnetic Tile set when present, else (or with ``--synthetic``) a
synthetic set of max(N) images at ``--size`` generated (once, seeded) under ``--out/data``. ``--quick``
means sizes 20,40, size 64, 1 repeat, 1 epoch, unless those options are given. The defaults on
Magnetic Tile aim at under ~15 minutes on 2 CPUs. Writes ``results.json`` (settings, machine, every raw
repeat, the medians, the growth) and ``table.md`` in ``--out`` and prints the tables. The runs and
stores live under ``--out/work`` and are deleted once measured unless ``--keep``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from weakseg.annotations.readers import load_annotations
from weakseg.annotations.schema import AnnotationSet
from weakseg.annotations.writers.coco import coco_dict
from weakseg.data.shared import shared_dataset
from weakseg.utils.atomic import atomic_write_json, atomic_write_text

TEACHERS = ("box", "contrast")
TRAIN_TEACHER = "contrast"  # whose masks the students learn from
BATCH = 8
MODES = ("cached", "online")


# --------------------------------------------------------------------------- child processes


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _stage_teacher(spec: dict[str, Any]) -> dict[str, Any]:
    from rich.console import Console

    from weakseg.pseudolabel.runner import pseudo_label

    base = _maxrss_mb()
    console = Console(stderr=True, force_terminal=False)  # problems still print; no progress bar
    work, teacher = Path(spec["work"]), spec["teacher"]
    runs = []
    for i in range(spec["repeats"]):
        store = work / f"pseudo-{teacher}-r{i}"
        shutil.rmtree(store, ignore_errors=True)  # a store resumes: it must start empty to be timed
        start = time.perf_counter()
        result = pseudo_label(spec["data"], teacher, store, format="coco", console=console)
        seconds = time.perf_counter() - start
        runs.append(
            {
                "seconds": seconds,
                "loop_seconds": result.seconds,
                "images": result.processed,
                "failed": result.failed,
                "images_per_s": result.processed / seconds,
            }
        )
        if result.merged is None:
            raise RuntimeError(f"{store}: not merged")
        if i == 0:
            shutil.rmtree(work / f"pseudo-{teacher}", ignore_errors=True)
            store.rename(work / f"pseudo-{teacher}")  # kept for training
        else:
            shutil.rmtree(store)
    return {"runs": runs, "rss_after_imports_mb": base}


def _stage_train(spec: dict[str, Any]) -> dict[str, Any]:
    from weakseg.annotations.splits import load_splits
    from weakseg.training.config import load_config
    from weakseg.training.feature_cache import FeatureCache
    from weakseg.training.train import train

    base = _maxrss_mb()
    config = load_config(None, spec["overrides"], spec["flags"])
    builds: list[dict[str, Any]] = []
    original = FeatureCache.__dict__["build"]  # the classmethod object, restored afterwards

    def timed(cls: type, folder: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original.__get__(None, cls)(folder, *args, **kwargs)
        finally:
            n_images = args[2] if len(args) > 2 else kwargs.get("n_images")
            builds.append(
                {"cache": Path(folder).name, "images": n_images, "seconds": time.perf_counter() - start}
            )

    run = Path(spec["run"])
    FeatureCache.build = classmethod(timed)  # type: ignore[method-assign,assignment]
    start = time.perf_counter()
    try:
        summary = train(spec["data"], spec["pseudo"], run, config, cache_dir=run / "cache")
    finally:
        FeatureCache.build = original  # type: ignore[method-assign]
    wall = time.perf_counter() - start
    epochs = []
    with open(run / "metrics.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("epoch_seconds"):
                epochs.append(float(row["epoch_seconds"]))
    splits = list(load_splits(run / "splits.json").values())
    return {
        "wall_seconds": wall,
        "epoch_seconds": epochs,
        "median_epoch_seconds": statistics.median(epochs) if epochs else None,
        "cache_build_seconds": sum(b["seconds"] for b in builds) if builds else None,
        "cache_builds": builds,
        "train_images": splits.count("train"),
        "val_images": splits.count("val"),
        "epochs_run": summary["epochs"],
        "rss_after_imports_mb": base,
    }


def _stage_predict(spec: dict[str, Any]) -> dict[str, Any]:
    from weakseg.annotations.images import read_image
    from weakseg.inference.evaluate_run import predict_set
    from weakseg.inference.predictor import Predictor

    base = _maxrss_mb()
    ann = load_annotations(spec["data"], "coco")
    predictor = Predictor(spec["run"], batch_size=BATCH)
    predictor.probabilities([read_image(ann.image_path(r)) for r in ann.images[:BATCH]])  # warm-up
    runs = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        predicted = predict_set(predictor, ann)
        seconds = time.perf_counter() - start
        n = len(predicted.images)
        runs.append({"seconds": seconds, "images": n, "images_per_s": n / seconds})
    return {"runs": runs, "rss_after_imports_mb": base}


STAGES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "teacher": _stage_teacher,
    "train": _stage_train,
    "predict": _stage_predict,
}


def child(stage: str, spec_path: Path, report: Path) -> None:
    """One stage in this process; its result, peak RSS and torch threads go to ``report`` as JSON."""
    spec = json.loads(spec_path.read_text())
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    result = STAGES[stage](spec)
    result["peak_rss_mb"] = _maxrss_mb()
    result["torch_threads"] = torch.get_num_threads()
    atomic_write_json(report, result, indent=1)


def run_child(stage: str, spec: dict[str, Any], work: Path, name: str) -> dict[str, Any]:
    """``python speed.py --stage STAGE`` with ``spec``; its output goes to ``work/NAME.log``."""
    spec_path, report, log = (work / f"{name}.{ext}" for ext in ("spec.json", "report.json", "log"))
    atomic_write_json(spec_path, spec, indent=1)
    report.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--stage", stage]
    command += ["--spec", str(spec_path), "--report", str(report)]
    start = time.perf_counter()
    with open(log, "w") as fh:
        done = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0 or not report.is_file():
        sys.exit(f"{name} failed (exit {done.returncode}); {log} ends:\n{log.read_text()[-4000:]}")
    result = json.loads(report.read_text())
    result["process_seconds"] = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------- parent


def machine_info() -> dict[str, Any]:
    import torch

    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "cpu_model": model,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def resolve_data(args: argparse.Namespace, n_max: int, size: int) -> tuple[Path, str]:
    if args.data is not None:
        return args.data, "given"
    if not args.synthetic:
        found = shared_dataset("magnetic_tile")
        if found is not None:
            return found, "magnetic_tile"
    from weakseg.data.synthetic import generate_synthetic

    folder = args.out / "data" / f"synthetic-n{n_max}-s{size}-seed{args.seed}"
    if not (folder / "dataset.json").is_file():
        print(f"generating {n_max} synthetic images at {size}x{size} in {folder}", file=sys.stderr)
        generate_synthetic(folder, n_images=n_max, size=(size, size), seed=args.seed, overwrite=True)
    return folder, "synthetic"


def write_subset(ann: AnnotationSet, names: list[str], path: Path) -> None:
    """A COCO file of the images ``names`` of ``ann`` that reads its images from ``ann``'s root."""
    subset = ann.with_files(names)
    doc = coco_dict(subset)
    doc["weakseg"]["image_root"] = str(ann.root.resolve())
    atomic_write_json(path, doc)
    back = load_annotations(path, "coco")
    if sorted(r.file_name for r in back.images) != sorted(names):
        sys.exit(f"{path}: the subset does not read back as the {len(names)} images written")


def median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def measure_size(n: int, subset: Path, work: Path, args: argparse.Namespace, settings: dict) -> dict:
    """Every stage on one subset of ``n`` images; raw results and their medians."""
    repeats, threads = settings["repeats"], args.threads
    raw: dict[str, Any] = {}
    for teacher in TEACHERS:
        spec = {"data": str(subset), "teacher": teacher, "work": str(work), "repeats": repeats}
        raw[f"teacher_{teacher}"] = result = run_child("teacher", {**spec, "threads": threads}, work, teacher)
        secs = median([r["seconds"] for r in result["runs"]])
        print(f"  N={n} {teacher}: {n / secs:.1f} img/s", file=sys.stderr)

    flags = {"epochs": settings["epochs"], "size": settings["size"], "batch_size": BATCH, "seed": args.seed}
    pseudo = work / f"pseudo-{TRAIN_TEACHER}"
    raw["train_cached"], raw["train_online"] = [], []
    for i in range(repeats):
        for mode in MODES:
            run = work / f"train-{mode}-r{i}"
            spec = {
                "data": str(subset),
                "pseudo": str(pseudo),
                "run": str(run),
                "flags": {**flags, "feature_cache": mode == "cached"},
                "overrides": list(args.set),
                "threads": threads,
            }
            result = run_child("train", spec, work, f"train-{mode}-r{i}")
            raw[f"train_{mode}"].append(result)
            shutil.rmtree(run / "cache", ignore_errors=True)
            if not (mode == "cached" and i == 0):  # the first cached run is the one predicting
                shutil.rmtree(run, ignore_errors=True)
            build = result["cache_build_seconds"]
            print(
                f"  N={n} train {mode} #{i + 1}: {result['median_epoch_seconds']:.2f} s/epoch"
                + (f", cache build {build:.2f} s" if build is not None else ""),
                file=sys.stderr,
            )

    spec = {"data": str(subset), "run": str(work / "train-cached-r0"), "repeats": repeats, "threads": threads}
    raw["predict"] = result = run_child("predict", spec, work, "predict")
    print(f"  N={n} predict: {n / median([r['seconds'] for r in result['runs']]):.1f} img/s", file=sys.stderr)

    cached, online = raw["train_cached"], raw["train_online"]
    med: dict[str, Any] = {}
    for teacher in TEACHERS:
        med[f"{teacher}_s"] = median([r["seconds"] for r in raw[f"teacher_{teacher}"]["runs"]])
        med[f"{teacher}_img_s"] = ratio(n, med[f"{teacher}_s"])
        loop = median([r["loop_seconds"] for r in raw[f"teacher_{teacher}"]["runs"]])
        med[f"{teacher}_loop_img_s"] = ratio(n, loop)  # the labelling loop alone, no read/merge
        med[f"{teacher}_peak_rss_mb"] = raw[f"teacher_{teacher}"]["peak_rss_mb"]
    med["cache_build_s"] = median([r["cache_build_seconds"] for r in cached])
    med["epoch_cached_s"] = median([r["median_epoch_seconds"] for r in cached])
    med["epoch_online_s"] = median([r["median_epoch_seconds"] for r in online])
    med["online_over_cached"] = ratio(med["epoch_online_s"], med["epoch_cached_s"])
    med["train_wall_cached_s"] = median([r["wall_seconds"] for r in cached])
    med["train_wall_online_s"] = median([r["wall_seconds"] for r in online])
    med["train_peak_rss_mb"] = median([r["peak_rss_mb"] for r in cached])
    med["online_peak_rss_mb"] = median([r["peak_rss_mb"] for r in online])
    med["train_rss_after_imports_mb"] = median([r["rss_after_imports_mb"] for r in cached])
    med["predict_s"] = median([r["seconds"] for r in raw["predict"]["runs"]])
    med["predict_img_s"] = ratio(n, med["predict_s"])
    med["predict_peak_rss_mb"] = raw["predict"]["peak_rss_mb"]
    return {"raw": raw, "median": med, "train_images": cached[0]["train_images"]}


#: Growth table rows: label and the median key of a time in seconds.
GROWTH = (
    ("box labelling", "box_s"),
    ("contrast labelling", "contrast_s"),
    ("cache build", "cache_build_s"),
    ("epoch, cached", "epoch_cached_s"),
    ("epoch, online", "epoch_online_s"),
    ("predict pass", "predict_s"),
)


def exponent(ns: list[int], values: list[float | None]) -> float | None:
    """Slope of log(value) on log(N) by least squares (needs two sizes with positive values)."""
    pairs = [(math.log(n), math.log(v)) for n, v in zip(ns, values, strict=True) if v and v > 0]
    if len(pairs) < 2 or len({x for x, _ in pairs}) < 2:
        return None
    x, y = np.array(pairs).T
    return float(np.polyfit(x, y, 1)[0])


def growth(sizes: list[int], medians: dict[int, dict[str, Any]]) -> dict[str, Any]:
    n0 = sizes[0]
    out: dict[str, Any] = {}
    for _, key in (*GROWTH, ("train peak RSS", "train_peak_rss_mb")):
        values = [medians[n][key] for n in sizes]
        out[key] = {
            "per_image": {str(n): ratio(v, n) for n, v in zip(sizes, values, strict=True)},
            "ratio_vs_smallest": {str(n): ratio(v, values[0]) for n, v in zip(sizes, values, strict=True)},
            "linear_ratio": {str(n): n / n0 for n in sizes},
            "exponent": exponent(sizes, values),
        }
    return out


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"
    return str(value)


def tables(sizes: list[int], medians: dict[int, dict[str, Any]], grow: dict[str, Any]) -> str:
    head = ["N", "box img/s", "contrast img/s", "cache build s", "epoch s cached", "epoch s online"]
    head += ["online/cached", "predict img/s", "train peak RSS MB", "online peak RSS MB"]
    keys = ["box_img_s", "contrast_img_s", "cache_build_s", "epoch_cached_s", "epoch_online_s"]
    keys += ["online_over_cached", "predict_img_s", "train_peak_rss_mb", "online_peak_rss_mb"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in sizes:
        m = medians[n]
        digits = {"train_peak_rss_mb": 0, "online_peak_rss_mb": 0}
        lines.append("| " + " | ".join([str(n), *(fmt(m[k], digits.get(k, 2)) for k in keys)]) + " |")
    n0 = sizes[0]
    head = ["stage", *(f"ms/img @{n}" for n in sizes)]
    head += [f"t({n})/t({n0}) (linear {n / n0:.1f})" for n in sizes[1:]]
    head.append("exponent k (t ~ N^k)")
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, key in GROWTH:
        g = grow[key]
        per_image = [g["per_image"][str(n)] for n in sizes]
        cells = [label, *(fmt(v * 1000 if v is not None else None, 2) for v in per_image)]
        cells += [fmt(g["ratio_vs_smallest"][str(n)]) for n in sizes[1:]]
        cells.append(fmt(g["exponent"]))
        lines.append("| " + " | ".join(cells) + " |")
    g = grow["train_peak_rss_mb"]  # memory: the whole value at each N, not per image
    cells = ["train peak RSS (MB, whole)", *(fmt(medians[n]["train_peak_rss_mb"], 0) for n in sizes)]
    cells += [fmt(g["ratio_vs_smallest"][str(n)]) for n in sizes[1:]]
    cells.append(fmt(g["exponent"]))
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=None, help="default: shared Magnetic Tile, else synthetic"
    )
    parser.add_argument("--synthetic", action="store_true", help="generate a synthetic set even if MT exists")
    parser.add_argument("--sizes", default=None, help="numbers of images (default 100,200,400)")
    parser.add_argument("--size", type=int, default=None, help="training size (default 256)")
    parser.add_argument("--epochs", type=int, default=None, help="default 2")
    parser.add_argument("--repeats", type=int, default=None, help="default 3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=Path("bench/speed"))
    parser.add_argument("--keep", action="store_true", help="keep the runs and stores under --out/work")
    parser.add_argument("--quick", action="store_true", help="smoke test: sizes 20,40, size 64, 1x1")
    parser.add_argument("--set", nargs="*", default=[], help="key=value training settings")
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        child(args.stage, args.spec, args.report)
        return

    quick = args.quick
    sizes = sorted({int(s) for s in (args.sizes or ("20,40" if quick else "100,200,400")).split(",")})
    settings = {
        "sizes": sizes,
        "size": args.size or (64 if quick else 256),
        "epochs": args.epochs or (1 if quick else 2),
        "repeats": args.repeats or (1 if quick else 3),
        "batch_size": BATCH,
        "seed": args.seed,
        "threads": args.threads,
        "set": list(args.set),
        "train_teacher": TRAIN_TEACHER,
        "quick": quick,
    }
    from weakseg.training.config import load_config

    load_config(None, args.set, {"size": settings["size"]})  # bad --set values fail now, not later
    started = time.perf_counter()
    out = args.out
    data, kind = resolve_data(args, sizes[-1], settings["size"])
    ann = load_annotations(data)
    images = sorted(r.file_name for r in ann.images)
    if sizes[-1] > len(images):
        sys.exit(f"{data} has {len(images)} images, fewer than N={sizes[-1]}")
    order = [images[i] for i in np.random.default_rng(args.seed).permutation(len(images))]
    machine = machine_info()
    print(
        f"{data} ({kind}): {len(images)} images; sizes {sizes}; {machine['cpus_usable']} CPUs",
        file=sys.stderr,
    )

    results: dict[str, Any] = {
        "data": str(data),
        "data_kind": kind,
        "dataset_images": len(images),
        "settings": settings,
        "machine": machine,
        "sizes": {},
    }
    medians: dict[int, dict[str, Any]] = {}
    work_root = out / "work"
    for n in sizes:
        work = work_root / f"n{n}"
        shutil.rmtree(work, ignore_errors=True)  # stores and runs resume: every measurement starts empty
        work.mkdir(parents=True)
        names = order[:n]
        subset = work / "subset.json"
        write_subset(ann, names, subset)
        chosen = ann.with_files(names)
        measured = measure_size(n, subset, work, args, settings)
        measured["images_with_boxes"] = sum(bool(r.instances) for r in chosen.images)
        measured["boxes"] = sum(len(r.instances) for r in chosen.images)
        results["sizes"][str(n)] = measured
        medians[n] = measured["median"]
        atomic_write_json(out / "results.json", results, indent=1)  # partial results survive a kill
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if not args.keep and work_root.is_dir() and not any(work_root.iterdir()):
        work_root.rmdir()

    grow = growth(sizes, medians)
    results["growth"] = grow
    results["wall_minutes"] = (time.perf_counter() - started) / 60
    atomic_write_json(out / "results.json", results, indent=1)
    intro = (
        f"{kind} ({data}), sizes {','.join(map(str, sizes))}, training size {settings['size']}, "
        f"{settings['epochs']} epoch(s), batch {BATCH}, median of {settings['repeats']} repeat(s), "
        f"seed {args.seed}; {machine['cpus_usable']} CPUs, torch {machine['torch_version']} "
        f"({machine['torch_threads']} threads); {results['wall_minutes']:.1f} min"
    )
    text = intro + "\n\n" + tables(sizes, medians, grow)
    atomic_write_text(out / "table.md", text + "\n")
    print(text)


if __name__ == "__main__":
    main()
