"""The pseudo-label store: per-image files, append-only manifests, one atomically merged COCO JSON.

Layout::

    STORE/store.json                    teacher, its config and hash, class map, dataset path
    STORE/items/<file_name>.json        one image's pseudo-masks (RLE) and scores, written atomically
    STORE/manifest-<i>-of-<n>.jsonl     one line per finished image of shard i (status, quality, error)
    STORE/pseudo.json                   the merged COCO file (RLE masks, ``score``, ``teacher``)

An image counts as finished only when its item file exists *and* its manifest line is complete, so a
job killed at any instant resumes where it stopped: a torn last manifest line is dropped on reopening
and the image is simply done again. The merged file is streamed to a temporary file and renamed, so
memory stays flat and readers never see half of it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

from weakseg.annotations.schema import AnnotationSet, ClassMap, Instance
from weakseg.annotations.writers.coco import annotation_entry
from weakseg.errors import DataError, WeaksegError
from weakseg.utils.atomic import atomic_open, atomic_write_json

STORE_KIND = "weakseg-pseudo-store"
STORE_VERSION = 1
MERGED_FILE = "pseudo.json"


@dataclass
class ManifestEntry:
    file_name: str
    status: str  # "ok" | "failed"
    config_hash: str
    instances: int = 0
    empty: int = 0
    quality: float | None = None  # mean quality of the image's pseudo-masks
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


class PseudoStore:
    """A store folder; see the module docstring for the layout."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- metadata ------------------------------------------------------------------------------
    @property
    def meta_path(self) -> Path:
        return self.path / "store.json"

    def exists(self) -> bool:
        return self.meta_path.is_file()

    def meta(self) -> dict[str, Any]:
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(self.path, "is not a pseudo-label store (no store.json)") from None
        except json.JSONDecodeError as exc:
            raise DataError(self.meta_path, f"malformed JSON: {exc}") from None
        if meta.get("kind") != STORE_KIND:
            raise DataError(self.meta_path, "is not a weakseg pseudo-label store")
        return meta

    def open(self, meta: dict[str, Any]) -> None:
        """Create the store, or check that an existing one was made by the same teacher config."""
        meta = {"kind": STORE_KIND, "version": STORE_VERSION, **meta}
        if self.exists():
            old = self.meta()
            for key in ("config_hash", "class_map", "data"):
                if old.get(key) != meta.get(key):
                    raise WeaksegError(
                        f"{self.path}: this store was made with a different {key.replace('_', ' ')} "
                        f"({old.get(key)!r} != {meta.get(key)!r}); use another --out or --overwrite"
                    )
            return
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.meta_path, meta, indent=2)

    @property
    def class_map(self) -> ClassMap:
        return ClassMap.from_dict(self.meta()["class_map"])

    # -- items ---------------------------------------------------------------------------------
    def item_path(self, file_name: str) -> Path:
        return self.path / "items" / (PurePosixPath(file_name).as_posix() + ".json")

    def write_item(self, item: dict[str, Any]) -> None:
        atomic_write_json(self.item_path(item["file_name"]), item)

    def read_item(self, file_name: str) -> dict[str, Any]:
        path = self.item_path(file_name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(path, f"unreadable store item: {exc}") from None

    # -- manifests -----------------------------------------------------------------------------
    def manifest_path(self, shard_tag: str) -> Path:
        return self.path / f"manifest-{shard_tag}.jsonl"

    def manifests(self) -> list[Path]:
        return sorted(self.path.glob("manifest-*.jsonl"))

    def read_manifest(self, path: Path, *, repair: bool = False) -> dict[str, ManifestEntry]:
        """Entries by file name (a later line wins); a torn last line is dropped (and cut if ``repair``)."""
        entries: dict[str, ManifestEntry] = {}
        if not path.is_file():
            return entries
        raw = path.read_bytes()
        good_end = 0
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                entry = ManifestEntry(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                break
            entries[entry.file_name] = entry
            good_end += len(line)
        if repair and good_end < len(raw):
            with open(path, "r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())
        return entries

    def finished(self, config_hash: str) -> dict[str, ManifestEntry]:
        """All images finished by any shard with this config (ok or failed)."""
        done: dict[str, ManifestEntry] = {}
        for path in self.manifests():
            for name, entry in self.read_manifest(path).items():
                if entry.config_hash == config_hash and (
                    entry.status != "ok" or self.item_path(name).is_file()
                ):
                    done[name] = entry
        return done

    @contextlib.contextmanager
    def appender(self, shard_tag: str) -> Iterator[TextIO]:
        """Append handle for a shard's manifest, after cutting any torn last line."""
        path = self.manifest_path(shard_tag)
        self.read_manifest(path, repair=True)
        with open(path, "a", encoding="utf-8") as fh:
            yield fh

    @staticmethod
    def append(fh: TextIO, entry: ManifestEntry) -> None:
        fh.write(entry.to_json() + "\n")
        fh.flush()
        os.fsync(fh.fileno())

    # -- merge ---------------------------------------------------------------------------------
    @property
    def merged_path(self) -> Path:
        return self.path / MERGED_FILE

    def merge(
        self, ann: AnnotationSet, config_hash: str, *, finished: dict[str, ManifestEntry] | None = None
    ) -> dict[str, Any]:
        """Write ``pseudo.json`` for every image of ``ann``; all must be finished by some shard.

        ``finished`` is :meth:`finished` when the caller has just read it (it is not read again).
        """
        done = self.finished(config_hash) if finished is None else finished
        missing = [r.file_name for r in ann.images if r.file_name not in done]
        if missing:
            raise WeaksegError(
                f"{self.path}: {len(missing)} image(s) not labelled yet (e.g. {', '.join(missing[:3])}); "
                "run the remaining shards before merging"
            )
        meta = self.meta()
        failed = sorted(n for n, e in done.items() if e.status != "ok")
        ok_names = sorted(r.file_name for r in ann.images if done[r.file_name].status == "ok")
        image_root = os.path.relpath(ann.root.resolve(), self.path.resolve())
        _stream_coco(self, ok_names, ann.class_map, meta, image_root, failed)
        counts = _summary(done.values())
        counts["failed_images"] = failed
        return counts


def load_pseudo(path: str | Path) -> AnnotationSet:
    """The masks at ``path``: a pseudo-label store's merged file, or any annotation dataset (human masks)."""
    from weakseg.annotations.readers import load_annotations

    store = PseudoStore(path)
    if store.exists():
        if not store.merged_path.is_file():
            raise DataError(path, "the store has no pseudo.json yet; finish and merge it first")
        return load_annotations(store.merged_path, "coco")
    return load_annotations(path)


def _summary(entries: Any) -> dict[str, Any]:
    entries = list(entries)
    qualities = [e.quality for e in entries if e.quality is not None]
    return {
        "images": len(entries),
        "ok": sum(e.status == "ok" for e in entries),
        "failed": sum(e.status != "ok" for e in entries),
        "instances": sum(e.instances for e in entries),
        "empty_masks": sum(e.empty for e in entries),
        "mean_quality": (sum(qualities) / len(qualities)) if qualities else None,
    }


def _stream_coco(
    store: PseudoStore,
    names: list[str],
    class_map: ClassMap,
    meta: dict[str, Any],
    image_root: str,
    failed: list[str],
) -> None:
    """Write the merged COCO file one image at a time (two passes over the item files)."""
    with atomic_open(store.merged_path) as fh:
        fh.write('{"images": [')
        unannotated = []
        for image_id, name in enumerate(names, start=1):
            item = store.read_item(name)
            if not item["annotated"]:
                unannotated.append(name)
            entry = {"id": image_id, "file_name": name, "width": item["width"], "height": item["height"]}
            if item.get("tags") is not None:
                entry["tags"] = [class_map.name(t) for t in item["tags"] if t in class_map.ids]
            if item.get("split") is not None:
                entry["split"] = item["split"]
            fh.write(("," if image_id > 1 else "") + json.dumps(entry))
        fh.write('], "annotations": [')
        ann_id = 0
        for image_id, name in enumerate(names, start=1):
            for inst in store.read_item(name)["instances"]:
                ann_id += 1
                fh.write(("," if ann_id > 1 else "") + json.dumps(_annotation(ann_id, image_id, inst)))
        categories = [{"id": i, "name": n} for i, n in zip(class_map.ids, class_map.names, strict=True)]
        block = {
            "class_map": class_map.to_dict(),
            "unannotated": unannotated,
            "image_root": image_root,
            "teacher": meta.get("teacher"),
            "config": meta.get("config"),
            "config_hash": meta.get("config_hash"),
            "failed": failed,
        }
        fh.write(f'], "categories": {json.dumps(categories)}, "weakseg": {json.dumps(block)}}}\n')


def _annotation(ann_id: int, image_id: int, inst: dict[str, Any]) -> dict[str, Any]:
    """The COCO writer's annotation entry plus the teacher's diagnostics (other tools ignore them)."""
    instance = Instance(
        inst["class_id"],
        tuple(inst["box"]),
        inst["mask"],
        inst["origin"],
        inst["score"],
        crowd=bool(inst.get("crowd", False)),
    )
    entry = annotation_entry(ann_id, image_id, instance)
    for key in ("confidence", "fill_ratio", "box_iou", "empty"):
        if key in inst:
            entry[key] = inst[key]
    return entry
