"""The feature cache's backbone pass: the model as built against its folded, channels-last copy.

Speed does not depend on the weights, so the backbone is randomly initialised (its BatchNorm
statistics randomised, so that the agreement check means something). Both variants run the same
batch in the same process, alternating, and the script prints the median milliseconds per image of
``--repeats`` passes, their ratio, and the largest difference between the two outputs relative to
each level's largest value.

    python benchmarks/feature_pass.py [--backbone lite0] [--size 320] [--batch 8] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from weakseg.student.fold import fast_features
from weakseg.student.segmenter import create_segmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="lite0")
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = create_segmenter("student", args.backbone, 5, weights=None)
    for bn in model.encoder().modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.normal_(0.0, 0.5)
            bn.running_var.uniform_(0.3, 1.3)
    model.eval()
    variants = {"as built": model.features, "folded, channels-last": fast_features(model)}
    batch = torch.rand(args.batch, 3, args.size, args.size)
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        outputs = {name: run(batch) for name, run in variants.items()}  # warm-up
        for _ in range(args.repeats):
            for name, run in variants.items():
                start = time.perf_counter()
                run(batch)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["as built"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:>22}: {median / args.batch * 1e3:6.1f} ms/image  ({base / median:.2f}x)")
    a, b = outputs.values()
    error = max(((p - q).abs().max() / p.abs().max()).item() for p, q in zip(a, b, strict=True))
    print(f"largest relative difference between the two: {error:.1e}")


if __name__ == "__main__":
    main()
