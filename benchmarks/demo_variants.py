"""The demo's student against its teacher, under other settings: what it takes for the student to win.

Each call generates the demo's synthetic set (or reuses it under ``--work``), labels it with the
teacher, splits it as the demo does, trains one student and prints one JSON line: the teacher's,
the student's refining the test boxes and the student's alone binary IoU on the test images, the
decision the run chose on val (source and threshold) and the training seconds. Run the variants one
after another, alone on the machine, to compare their times.

    python benchmarks/demo_variants.py --images 48 --size 128 --epochs 20 --loss demo --stride 4
    python benchmarks/demo_variants.py --images 96 --size 192 --epochs 30 --loss balanced --batch 8 --lr 3e-3
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from weakseg.annotations.readers import load_annotations
from weakseg.annotations.splits import apply_splits, load_splits, splits_for
from weakseg.data.synthetic import generate_synthetic
from weakseg.evaluate import evaluate
from weakseg.evaluation.scoring import evaluate_annotations
from weakseg.inference.refine import refine
from weakseg.pseudolabel.runner import pseudo_label
from weakseg.student.losses import LossConfig
from weakseg.student.model import DecoderConfig
from weakseg.training.train import TrainConfig, train

#: ``demo``: what ``weakseg demo`` trains with; ``balanced``: the student-learns test's loss.
LOSSES = {
    "demo": lambda epochs: LossConfig(fine_dice_weight=0.0, self_correction_warmup_epochs=min(3, epochs)),
    "balanced": lambda epochs: LossConfig(
        class_weights=[1.0] * 5, dice_beta=1.0, fine_dice_weight=1.0, box_class_weight=0.5
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--generated-size", type=int, default=192)
    parser.add_argument("--teacher", default="contrast")
    parser.add_argument("--size", type=int, default=128, help="training canvas")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--loss", choices=sorted(LOSSES), default="demo")
    parser.add_argument("--stride", type=int, choices=(2, 4), default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--work", type=Path, default=Path("demo-variants"))
    args = parser.parse_args()
    torch.set_num_threads(2)

    root = args.work / f"n{args.images}_seed{args.data_seed}_px{args.generated_size}"
    data = root / "data"
    if not (root / "splits.json").is_file():
        shutil.rmtree(root, ignore_errors=True)
        generate_synthetic(data, n_images=args.images, seed=args.data_seed, size=(args.generated_size,) * 2)
        splits_for(load_annotations(data), root / "splits.json", seed=args.data_seed)
    store = root / args.teacher
    if not (store / "pseudo.json").is_file():
        pseudo_label(data, args.teacher, store)

    name = f"{args.teacher}_{args.loss}_s{args.stride}_px{args.size}_e{args.epochs}"
    name += f"_b{args.batch}_lr{args.lr:g}"
    run = root / f"run_{name}_seed{args.seed}"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    shutil.copy(root / "splits.json", run / "splits.json")
    config = TrainConfig(
        size=(args.size, args.size),
        epochs=args.epochs,
        batch_size=args.batch,
        lr=args.lr,
        seed=args.seed,
        monitor="binary_iou",
        patience=args.epochs,
        decoder=DecoderConfig(output_stride=args.stride),
        loss=LOSSES[args.loss](args.epochs),
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
