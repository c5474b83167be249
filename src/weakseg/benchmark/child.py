"""One benchmark training run in its own process, so its wall time and peak memory are its own.

    python -m weakseg.benchmark.child REPORT DATA PSEUDO RUN CACHE_DIR {fresh|resume} [key=value ...]

Writes ``REPORT`` (JSON: ``peak_rss_mb``, ``train_seconds``) once training has finished.
"""

from __future__ import annotations

import resource
import sys
import time

from weakseg.training.config import load_config
from weakseg.training.train import train
from weakseg.utils.atomic import atomic_write_json


def main(argv: list[str]) -> None:
    report, data, pseudo, run, cache_dir, mode, *overrides = argv
    start = time.perf_counter()
    train(data, pseudo, run, load_config(None, overrides), resume=mode == "resume", cache_dir=cache_dir)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    atomic_write_json(report, {"peak_rss_mb": peak, "train_seconds": time.perf_counter() - start})


if __name__ == "__main__":
    main(sys.argv[1:])  # a failure leaves its traceback and a non-zero exit for the parent
