"""``weakseg benchmark``: teachers, refined masks, student ablations, a U-Net and the supervised ceiling."""

from weakseg.benchmark.plan import DEFAULT_SETTINGS, BenchmarkSettings
from weakseg.benchmark.runner import BenchmarkOutput, benchmark

__all__ = ["DEFAULT_SETTINGS", "BenchmarkOutput", "BenchmarkSettings", "benchmark"]
