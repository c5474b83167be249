"""The labelling job: resumable after SIGKILL, shardable, tolerant of bad images, identical results."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from weakseg.annotations.readers import load_annotations
from weakseg.data.synthetic import generate_synthetic
from weakseg.errors import DataError
from weakseg.pseudolabel.runner import pseudo_label
from weakseg.pseudolabel.store import PseudoStore


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "data"
    generate_synthetic(root, n_images=16, size=(96, 96), seed=3)
    return root


def _store_files(store: Path) -> dict[str, bytes]:
    """Everything that must match between runs: the merged file and every item file."""
    files = {"pseudo.json": (store / "pseudo.json").read_bytes()}
    for path in sorted((store / "items").rglob("*.json")):
        files[path.relative_to(store).as_posix()] = path.read_bytes()
    return files


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "weakseg", "pseudo-label", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_store_reads_back_as_coco(dataset: Path, tmp_path: Path) -> None:
    result = pseudo_label(dataset, "box", tmp_path / "store")
    ann = load_annotations(dataset)
    assert result.processed == len(ann) and result.failed == 0
    pseudo = load_annotations(tmp_path / "store" / "pseudo.json")
    assert pseudo.class_map == ann.class_map
    assert pseudo.root.resolve() == ann.root.resolve()
    assert sum(len(r.instances) for r in pseudo) == sum(len(r.instances) for r in ann)
    insts = [i for _, i in pseudo.instances()]
    assert all(i.origin == "pseudo:box" and i.mask is not None and 0 <= i.score <= 1 for i in insts)
    again = pseudo_label(dataset, "box", tmp_path / "store")
    assert again.processed == 0 and again.skipped == len(ann)


def test_a_truncated_image_stops_the_job_before_any_work_unless_skipped(
    dataset: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(dataset), str(copy)], check=True)
    victim = next(r for r in load_annotations(copy) if r.instances)
    image = copy / "images" / victim.file_name
    image.write_bytes(image.read_bytes()[:300])  # truncated: the header reads, the pixels do not
    with pytest.raises(DataError, match=victim.file_name):
        pseudo_label(copy, "box", tmp_path / "store")
    assert not (tmp_path / "store").exists()  # nothing written
    result = pseudo_label(copy, "box", tmp_path / "store", skip_invalid=True)
    assert result.invalid_images == 1 and result.failed == 0
    assert any(victim.file_name in line and "truncated" in line for line in result.invalid)
    assert victim.file_name not in load_annotations(tmp_path / "store").by_file_name()


def test_a_checked_dataset_is_decoded_once_for_several_teachers(
    dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    from weakseg.pseudolabel import runner

    calls = []
    real = runner.validate
    monkeypatch.setattr(runner, "validate", lambda *a, **k: calls.append(1) or real(*a, **k))
    checked, problems, dropped = runner.checked_annotations(dataset)
    assert (len(checked), problems, dropped) == (len(load_annotations(dataset)), [], 0)
    for teacher in ("box", "contrast"):
        pseudo_label(dataset, teacher, tmp_path / teacher, checked=True)
    assert len(calls) == 1
    # the same store as an unchecked call: the check changes no output
    pseudo_label(dataset, "box", tmp_path / "again")
    assert _store_files(tmp_path / "box") == _store_files(tmp_path / "again")
    assert len(calls) == 2


def test_failing_image_is_recorded_not_fatal(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    """An image the teacher fails on (not the data: it passed the checks) is recorded and named."""
    from weakseg.teachers.box_fill import BoxFillTeacher

    original, calls = BoxFillTeacher.predict, []

    def flaky(self, image, boxes, class_ids):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("teacher broke")
        return original(self, image, boxes, class_ids)

    monkeypatch.setattr(BoxFillTeacher, "predict", flaky)
    result = pseudo_label(dataset, "box", tmp_path / "store")
    assert result.failed == 1 and len(result.failures) == 1
    victim = result.summary["failed_images"][0]
    assert result.failures[0].startswith(str(dataset / "images" / victim)) or victim in result.failures[0]
    assert "teacher broke" in result.failures[0]
    entries = PseudoStore(tmp_path / "store").finished(PseudoStore(tmp_path / "store").meta()["config_hash"])
    assert "teacher broke" in (entries[victim].error or "")
    assert victim not in load_annotations(tmp_path / "store").by_file_name()


def test_sigkill_then_resume_equals_uninterrupted(dataset: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    pseudo_label(dataset, "grabcut", reference)

    killed = tmp_path / "killed"
    proc = _cli(str(dataset), "-t", "grabcut", "-o", str(killed), env={"WEAKSEG_PSEUDO_ITEM_DELAY": "0.2"})
    manifest = killed / "manifest-00000-of-00001.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline:
        if manifest.is_file() and manifest.read_text().count("\n") >= 4:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lines = manifest.read_text().count("\n")
    assert 4 <= lines < 16, "the job must have been killed mid-run"
    assert not (killed / "pseudo.json").exists()

    resumed = pseudo_label(dataset, "grabcut", killed)
    assert resumed.skipped >= 4
    assert _store_files(killed) == _store_files(reference)
    assert not list(killed.rglob("*.tmp"))


def test_two_shard_processes_then_merge_equal_one_process(dataset: Path, tmp_path: Path) -> None:
    single = tmp_path / "single"
    pseudo_label(dataset, "contrast", single)

    sharded = tmp_path / "sharded"
    procs = [
        _cli(str(dataset), "-t", "contrast", "-o", str(sharded), env={"RANK": str(i), "WORLD_SIZE": "2"})
        for i in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    merge = _cli(str(dataset), "-o", str(sharded), "-t", "contrast", "--merge-only")
    _, err = merge.communicate(timeout=120)
    assert merge.returncode == 0, err
    assert len(list(sharded.glob("manifest-*-of-00002.jsonl"))) == 2
    assert _store_files(sharded) == _store_files(single)


def test_workers_give_the_same_store(dataset: Path, tmp_path: Path) -> None:
    pseudo_label(dataset, "grabcut", tmp_path / "one")
    pseudo_label(dataset, "grabcut", tmp_path / "two", workers=2)
    assert _store_files(tmp_path / "one") == _store_files(tmp_path / "two")


def test_other_teacher_config_refused(dataset: Path, tmp_path: Path) -> None:
    from weakseg.errors import WeaksegError

    pseudo_label(dataset, "box", tmp_path / "s")
    with pytest.raises(WeaksegError, match="different"):
        pseudo_label(dataset, "grabcut", tmp_path / "s")


def test_unreadable_image_is_skipped_by_the_reader_not_fatal(dataset: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(dataset), str(copy)], check=True)
    (copy / "tags.csv").unlink()
    victim = next(r for r in load_annotations(copy) if r.instances)
    (copy / "images" / victim.file_name).write_bytes(b"not an image")
    with pytest.raises(DataError, match=victim.file_name):
        pseudo_label(copy, "box", tmp_path / "store")
    result = pseudo_label(copy, "box", tmp_path / "store", skip_invalid=True)
    assert result.failed == 0 and result.invalid_images == 1
    assert victim.file_name not in load_annotations(tmp_path / "store").by_file_name()
