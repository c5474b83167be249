"""One training step on cached features (decode + loss + backward + AdamW), decoder variants side by side.

What an epoch costs is mostly this step (the backbone's features come from the feature cache). The
script builds a small synthetic set at ``--size``, caches its features once, and then times the
step of each decoder variant on the same batches, the variants interleaved step by step in one
process so that the machine's drift hits them alike. Speed does not depend on the weights: the
backbone is randomly initialised. Prints the median seconds per step and each variant's ratio to the
first.

    python benchmarks/train_step.py [--size 320] [--batch 8] [--steps 15]
        [--variants default,upsample3,stride4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from weakseg.data.samples import SampleConfig, SegmentationSamples
from weakseg.data.synthetic import generate_synthetic
from weakseg.student.fold import fast_features
from weakseg.student.losses import LossConfig
from weakseg.student.model import DecoderConfig
from weakseg.student.segmenter import create_segmenter
from weakseg.training.data import CachedSamples, collate
from weakseg.training.feature_cache import FeatureCache
from weakseg.training.module import StudentModule, loss_inputs

#: Decoder variants by name: today's default and the settings the step was made cheaper from.
VARIANTS = {
    "default": DecoderConfig(),
    "upsample3": DecoderConfig(upsample_kernel=3),
    "stride4": DecoderConfig(output_stride=4),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per variant")
    parser.add_argument("--variants", default="default,upsample3,stride4", help=", ".join(VARIANTS))
    parser.add_argument("--backbone", default="lite0")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    names = args.variants.split(",")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        ann = generate_synthetic(Path(tmp) / "data", n_images=2 * args.batch, size=(args.size,) * 2, seed=0)
        samples = SegmentationSamples(ann, SampleConfig(size=(args.size, args.size)))
        torch.manual_seed(0)
        encoder = create_segmenter("student", args.backbone, len(ann.class_map), weights=None)
        cache = FeatureCache.build(
            Path(tmp) / "cache", fast_features(encoder), samples.image, len(samples), {"benchmark": 1}
        )
        data = CachedSamples(samples, cache, augment=True)
        batches = [
            collate([data[i] for i in range(start, start + args.batch)])
            for start in range(0, len(data), args.batch)
        ]
        steps = {}
        for name in names:
            torch.manual_seed(0)
            model = create_segmenter(
                "student", args.backbone, len(ann.class_map), weights=None, decoder=VARIANTS[name]
            )
            # Self-correction on from the first step, as in the later epochs of a run.
            module = StudentModule(model, ann.class_map.names, LossConfig(self_correction_warmup_epochs=0))
            optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
            steps[name] = (model, module, optimiser)
        times: dict[str, list[float]] = {name: [] for name in names}
        for step in range(args.steps + 1):  # the first step of each variant is a warm-up
            batch = batches[step % len(batches)]
            for name, (model, module, optimiser) in steps.items():
                start = time.perf_counter()
                outputs = model.decode(batch["features"], batch["image"])
                total, _ = module.criterion(outputs, loss_inputs(batch), 1, step)
                optimiser.zero_grad()
                total.backward()
                optimiser.step()
                if step:
                    times[name].append(time.perf_counter() - start)
    base = statistics.median(times[names[0]])
    for name in names:
        median = statistics.median(times[name])
        print(f"{name:>10}: {median:.3f} s per step of {args.batch} at {args.size} px ({median / base:.2f}x)")


if __name__ == "__main__":
    main()
