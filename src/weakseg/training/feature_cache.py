"""Frozen-backbone features, computed once per image and flip, memory-mapped from disk.

The backbone never changes during training, so running it every epoch is pure waste: on a CPU it is
most of the cost of a step. The cache stores each feature level as one float16 array of shape
``[n_images * n_flips, C, h, w]`` (``level<k>.f16``) plus ``index.json``; epochs then read features
back through ``numpy.memmap`` and only the decoder runs. ``index.json`` is written last and atomically,
and records a key (backbone, weights, training size, image list with each file's content digest, see
:func:`image_fingerprint`): a cache built for anything else, or left incomplete by a killed job, is
rebuilt rather than trusted.

Several processes may ask for the same cache at once (the ranks of a DDP run, two runs sharing a
folder): a cache with the right key is read without any coordination; otherwise the builders queue on a
file lock beside the folder (``.<name>.lock``), the first one builds into a private temporary sibling
that is renamed into place once complete, and the others, woken in turn, find it built and read it.
The lock file is left in place on purpose: deleting it would let a late process lock a different file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from weakseg.utils.atomic import atomic_directory, atomic_write_json
from weakseg.utils.hashing import stable_hash

FLIPS = ("none", "hflip")


def apply_flip(x: torch.Tensor, flip: str) -> torch.Tensor:
    """Flip the last axis of an image/target/feature tensor (``none`` is the identity)."""
    if flip == "none":
        return x
    if flip == "hflip":
        return torch.flip(x, dims=(-1,))
    raise ValueError(f"unknown flip {flip!r}; known: {', '.join(FLIPS)}")


def cache_key(parts: dict) -> str:
    return stable_hash(parts, length=20)


def image_fingerprint(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of the file's bytes: an image rewritten under the same name gets another cache key.

    The bytes rather than size and mtime: hashing a dataset of small JPEG/PNG files costs well under a
    second next to the backbone pass it guards, it never misses an edit that keeps the size and mtime
    (``cp -p``, ``rsync -a``, clocks), and it gives the same key to the same images wherever they were
    copied, so runs (and DDP ranks on other nodes) still share a cache after the data moved.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def is_rank_zero(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process is global rank 0 of a distributed job (true when it is not distributed).

    Read from the environment, so it is known before any process group exists: ``RANK`` (torchrun,
    Lightning), else ``LOCAL_RANK`` with ``NODE_RANK``/``GROUP_RANK`` (Lightning's own launcher sets
    these in every process it starts), else ``SLURM_PROCID`` (``srun``). ``LOCAL_RANK`` goes before
    ``SLURM_PROCID`` because a launcher run inside one SLURM task gives every process the same
    ``SLURM_PROCID``, as Lightning's own rank detection assumes.
    """
    env = os.environ if env is None else env
    if "RANK" in env:
        return int(env["RANK"]) == 0
    if "LOCAL_RANK" in env:
        node = env.get("NODE_RANK", env.get("GROUP_RANK", "0"))
        return int(env["LOCAL_RANK"]) == 0 and int(node) == 0
    return int(env.get("SLURM_PROCID", "0")) == 0


@contextlib.contextmanager
def file_lock(path: str | Path, *, poll: float = 0.05) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block, across processes.

    ``flock`` where the platform has it (it is released if the holder dies; locks taken through separate
    ``open`` calls exclude each other even within one process). Elsewhere, or where the file system
    refuses ``flock``, a lock file created with ``O_EXCL`` and polled; it is removed on exit.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        fcntl = None  # type: ignore[assignment]
    if fcntl is not None:
        with open(path, "a+b") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            except OSError as exc:  # pragma: no cover - e.g. a file system without flock
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
            else:
                try:
                    yield
                finally:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
                return
    marker = path.with_name(path.name + ".excl")  # pragma: no cover - fallback
    while True:  # pragma: no cover
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            break
        except FileExistsError:
            time.sleep(poll)
    try:  # pragma: no cover
        yield
    finally:  # pragma: no cover
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()


class FeatureCache:
    """Read side of a built cache; build with :meth:`build`."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.index = json.loads((self.folder / "index.json").read_text())
        self.flips: list[str] = self.index["flips"]
        self.levels = [
            np.memmap(self.folder / f"level{k}.f16", dtype=np.float16, mode="r", shape=tuple(shape))
            for k, shape in enumerate(self.index["shapes"])
        ]

    def __len__(self) -> int:
        return self.index["images"]

    def get(self, image_index: int, flip: str = "none") -> list[torch.Tensor]:
        row = image_index * len(self.flips) + self.flips.index(flip)
        return [torch.from_numpy(np.asarray(level[row], dtype=np.float32)) for level in self.levels]

    @classmethod
    def build(
        cls,
        folder: str | Path,
        features: Callable[[torch.Tensor], Sequence[torch.Tensor]],
        images: Callable[[int], torch.Tensor],
        n_images: int,
        key: dict,
        *,
        flips: Sequence[str] = FLIPS,
        batch_size: int = 8,
        progress: Callable[[int], None] | None = None,
    ) -> FeatureCache:
        """Compute ``features(batch)`` for every image (``images(i)`` -> ``[3, H, W]``) and flip.

        Reuses an existing cache with the same key. Safe to call from several processes at once (the
        ranks of a DDP run): one of them builds, the others wait for it and reuse its cache.
        """
        folder = Path(folder)
        digest = cache_key({**key, "flips": list(flips), "images": n_images})
        if _has_key(folder, digest):
            return cls(folder)
        with file_lock(folder.parent / f".{folder.name}.lock"):
            if _has_key(folder, digest):  # built by another process while we waited
                return cls(folder)
            for stale in folder.parent.glob(f".{folder.name}.*.tmp"):  # left by a killed build
                shutil.rmtree(stale, ignore_errors=True)
            with atomic_directory(folder, overwrite=True) as tmp:
                _write(tmp, features, images, n_images, digest, flips, batch_size, progress)
        return cls(folder)


def _has_key(folder: Path, digest: str) -> bool:
    """Whether ``folder`` holds a complete cache built for ``digest``."""
    try:
        return json.loads((folder / "index.json").read_text()).get("key") == digest
    except (OSError, json.JSONDecodeError):  # missing, half-written by an old version, or moving
        return False


def _write(
    folder: Path,
    features: Callable[[torch.Tensor], Sequence[torch.Tensor]],
    images: Callable[[int], torch.Tensor],
    n_images: int,
    digest: str,
    flips: Sequence[str],
    batch_size: int,
    progress: Callable[[int], None] | None,
) -> None:
    """Compute every level into ``folder``; ``index.json`` last."""
    index_path = folder / "index.json"
    arrays: list[np.memmap] = []
    rows = n_images * len(flips)
    with torch.inference_mode():
        for start in range(0, n_images, batch_size):
            idx = list(range(start, min(start + batch_size, n_images)))
            batch = torch.stack([images(i) for i in idx])
            for f, flip in enumerate(flips):
                maps = [m.float().cpu().numpy().astype(np.float16) for m in features(apply_flip(batch, flip))]
                if not arrays:
                    arrays = [
                        np.memmap(
                            folder / f"level{k}.f16",
                            dtype=np.float16,
                            mode="w+",
                            shape=(rows, *m.shape[1:]),
                        )
                        for k, m in enumerate(maps)
                    ]
                for level, m in zip(arrays, maps, strict=True):
                    level[[i * len(flips) + f for i in idx]] = m
            if progress is not None:
                progress(len(idx))
    for level in arrays:
        level.flush()
    atomic_write_json(
        index_path,
        {
            "key": digest,
            "flips": list(flips),
            "images": n_images,
            "shapes": [list(a.shape) for a in arrays],
        },
    )
