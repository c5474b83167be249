"""Inference speed at 512x512: the student in PyTorch and ONNX (onnxruntime), and the U-Net baseline.

Speed does not depend on the weights, so the student is built with the default lite0 backbone and
a freshly initialised decoder; both engines run the same model, the same batches, in the same process,
alternating, and the script prints medians of ``--repeats`` timed passes and their ratio. The
baseline is a segmentation_models_pytorch U-Net on the same encoder (timm ``tf_efficientnet_lite0``,
extra ``[bench]``), skipped when that package is absent.

    python benchmarks/inference.py [--size 512] [--batch 8] [--batches 4] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from weakseg.deploy.onnx import _Probabilities
from weakseg.errors import WeaksegError
from weakseg.student.segmenter import create_segmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=4, help="batches per timed pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = _Probabilities(create_segmenter("student", "lite0", 5), "fine").eval()  # the default decision
    x = torch.rand(args.batch, 3, args.size, args.size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "student.onnx"
        torch.onnx.export(
            model,
            (x[:1],),
            str(path),
            input_names=["image"],
            output_names=["probabilities"],
            dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
            dynamo=False,
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run_torch() -> np.ndarray:
        with torch.inference_mode():
            return model(x).numpy()

    def run_onnx() -> np.ndarray:
        return session.run(None, {"image": x.numpy()})[0]

    engines = {"student, pytorch": run_torch, "student, onnxruntime": run_onnx}
    try:
        # The benchmark command's baseline: smp's U-Net on the same encoder, as `model=unet` trains it.
        unet = create_segmenter("unet", "lite0", 5, weights=None).eval()

        def run_unet() -> np.ndarray:
            with torch.inference_mode():
                return torch.softmax(unet(x)["fine"], dim=1).numpy()

        engines["U-Net (smp, same encoder), pytorch"] = run_unet
    except WeaksegError as exc:
        print(f"no U-Net row: {exc}")

    diff = float(np.abs(run_torch() - run_onnx()).max())  # also the warm-up
    times: dict[str, list[float]] = {name: [] for name in engines}
    for fn in engines.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for name, fn in engines.items():
            start = time.perf_counter()
            for _ in range(args.batches):
                fn()
            times[name].append(time.perf_counter() - start)
    images = args.batch * args.batches
    rates = {k: images / statistics.median(v) for k, v in times.items()}
    print(f"student (lite0), {args.size}x{args.size}, batch {args.batch}, {args.threads} threads")
    print(f"| engine | images/s (median of {args.repeats}) |")
    print("|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.1f} |")
    base = rates["student, pytorch"]
    print(f"onnxruntime / pytorch: {rates['student, onnxruntime'] / base:.2f}x; max |dp| {diff:.2e}")
    if len(rates) > 2:
        print(f"student (pytorch) / U-Net: {base / rates['U-Net (smp, same encoder), pytorch']:.2f}x")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
