"""The demo's student against its teacher, under other settings: what it takes for the student to win.

Each call generates the demo's synthetic set (or reuses it under ``--work``), labels it with the
teacher, splits it as the demo does (``DEMO_FRACTIONS``), trains one student and prints one JSON
line: the teacher's, the student's refining the test boxes and the student's alone binary IoU on the
test images, the decision the run chose on val (source and threshold) and the training seconds. Run
the variants one after another, alone on the machine, to compare their times.

    python benchmarks/demo_variants.py                      # the demo's own settings
    python benchmarks/demo_variants.py --images 120 --data-seed 1
    python benchmarks/demo_variants.py --size 128 --epochs 20 --loss b2p --stride 4 --batch 4 --lr 2e-3
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from weakseg.annotations.readers import load_annotations
from weakseg.annotations.splits import apply_splits, load_splits, splits_for
from weakseg.data.synthetic import generate_synthetic
from weakseg.demo import DEMO_FRACTIONS, demo_train_config
from weakseg.evaluate import evaluate
from weakseg.evaluation.scoring import evaluate_annotations
from weakseg.inference.refine import refine
from weakseg.pseudolabel.runner import pseudo_label
from weakseg.student.losses import LossConfig
from weakseg.student.model import DecoderConfig
from weakseg.training.train import train

#: ``balanced``: the demo's loss (the student-learns test's); ``b2p``: Boxes2Pixels' 0.4 / 4.0 without
#: the class Dice, the demo's loss before 2026-12-06.
LOSSES = {
    "balanced": lambda config: config.loss,
    "b2p": lambda config: LossConfig(
        fine_dice_weight=0.0, self_correction_warmup_epochs=min(3, config.epochs)
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=80)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--generated-size", type=int, default=192)
    parser.add_argument("--teacher", default="contrast")
    base = demo_train_config()
    parser.add_argument("--size", type=int, default=base.size[0], help="training canvas")
    parser.add_argument("--epochs", type=int, default=base.epochs)
    parser.add_argument("--loss", choices=sorted(LOSSES), default="balanced")
    parser.add_argument("--stride", type=int, choices=(2, 4), default=base.decoder.output_stride)
    parser.add_argument("--width", type=int, default=base.decoder.width, help="decoder width")
    parser.add_argument("--out-channels", type=int, default=base.decoder.out_channels)
    parser.add_argument("--batch", type=int, default=base.batch_size)
    parser.add_argument("--lr", type=float, default=base.lr)
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--work", type=Path, default=Path("demo-variants"))
    args = parser.parse_args()
    torch.set_num_threads(2)

    root = args.work / f"n{args.images}_seed{args.data_seed}_px{args.generated_size}_demo-split"
    data = root / "data"
    if not (root / "splits.json").is_file():
        shutil.rmtree(root, ignore_errors=True)
        generate_synthetic(data, n_images=args.images, seed=args.data_seed, size=(args.generated_size,) * 2)
        ann = load_annotations(data)
        splits_for(ann, root / "splits.json", seed=args.data_seed, fractions=DEMO_FRACTIONS)
    store = root / args.teacher
    if not (store / "pseudo.json").is_file():
        pseudo_label(data, args.teacher, store)

    name = f"{args.teacher}_{args.loss}_s{args.stride}_px{args.size}_e{args.epochs}"
    name += f"_b{args.batch}_lr{args.lr:g}_w{args.width}x{args.out_channels}"
    run = root / f"run_{name}_seed{args.seed}"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    shutil.copy(root / "splits.json", run / "splits.json")
    config = demo_train_config(epochs=args.epochs, size=args.size, seed=args.seed)
    config = replace(
        config,
        batch_size=args.batch,
        lr=args.lr,
        decoder=DecoderConfig(output_stride=args.stride, width=args.width, out_channels=args.out_channels),
        loss=LOSSES[args.loss](config),
    )
    start = time.perf_counter()
    train(data, store, run, config)
    seconds = time.perf_counter() - start

    gt = load_annotations(data)
    apply_splits(gt, load_splits(run / "splits.json"))
    test = gt.subset("test")
    refine(run, test, run / "refined")
    refined = evaluate_annotations(load_annotations(run / "refined" / "pseudo.json", "coco"), test, worst=0)
    names = [r.file_name for r in test.images]
    teacher_masks = load_annotations(store / "pseudo.json", "coco").with_files(names)
    teacher = evaluate_annotations(teacher_masks, test, worst=0)
    alone = evaluate(run, data).result
    decision = json.loads((run / "decision.json").read_text())
    print(
        json.dumps(
            {
                "variant": name,
                "images": args.images,
                "data_seed": args.data_seed,
                "seed": args.seed,
                "test_images": len(test.images),
                "train_s": round(seconds, 1),
                "decision": f"{decision['source']} t={decision['threshold']}",
                "teacher": round(teacher.metrics["binary_iou"], 3),
                "refined": round(refined.metrics["binary_iou"], 3),
                "alone": round(alone.metrics["binary_iou"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
