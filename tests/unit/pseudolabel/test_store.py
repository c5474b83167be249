"""The store's manifests survive torn writes; stores made with another config are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from weakseg.errors import WeaksegError
from weakseg.pseudolabel.store import ManifestEntry, PseudoStore

META = {
    "teacher": "box",
    "config_hash": "abc",
    "class_map": {"background": 0, "classes": {"1": "a"}},
    "data": "/d",
}


def test_torn_manifest_line_is_dropped_and_cut(tmp_path: Path) -> None:
    store = PseudoStore(tmp_path / "s")
    store.open(META)
    store.write_item({"file_name": "a.png", "instances": []})
    with store.appender("00000-of-00001") as fh:
        store.append(fh, ManifestEntry("a.png", "ok", "abc"))
    path = store.manifest_path("00000-of-00001")
    with open(path, "a") as fh:
        fh.write('{"file_name": "b.png", "sta')  # killed mid-line
    assert set(store.finished("abc")) == {"a.png"}
    with store.appender("00000-of-00001"):
        pass
    assert path.read_text().count("\n") == 1
    assert path.read_text().endswith("\n")


def test_finished_needs_the_item_file_and_the_hash(tmp_path: Path) -> None:
    store = PseudoStore(tmp_path / "s")
    store.open(META)
    with store.appender("00000-of-00001") as fh:
        store.append(fh, ManifestEntry("a.png", "ok", "abc"))  # no item file: not finished
        store.append(fh, ManifestEntry("b.png", "failed", "abc", error="boom"))
        store.append(fh, ManifestEntry("c.png", "failed", "old"))
    assert set(store.finished("abc")) == {"b.png"}


def test_other_config_is_refused(tmp_path: Path) -> None:
    store = PseudoStore(tmp_path / "s")
    store.open(META)
    with pytest.raises(WeaksegError, match="different config hash"):
        PseudoStore(tmp_path / "s").open({**META, "config_hash": "zzz"})
