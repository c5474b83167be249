"""Splits are seeded, stratified, group-aware, and reused from their file so methods share images."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weakseg.annotations.schema import ORIGIN_GT_MASK, AnnotationSet, ClassMap, ImageRecord, Instance
from weakseg.annotations.splits import (
    SPLITS,
    apply_splits,
    choose_splits,
    declared_splits,
    load_splits,
    make_splits,
    read_user_splits,
    save_splits,
    split_source,
    splits_for,
)
from weakseg.errors import DataError

CLASSES = ClassMap(("blowhole", "break", "crack", "fray", "uneven"))
MT_GROUP = r"^(exp\d+)_"


def _record(name: str, class_ids: tuple[int, ...] = (), *, annotated: bool = True, tags=None) -> ImageRecord:
    instances = [Instance(c, (0.0, 0.0, 4.0, 4.0), origin=ORIGIN_GT_MASK) for c in class_ids]
    return ImageRecord(name, 32, 32, instances, tags=tags, annotated=annotated)


def _dataset(records: list[ImageRecord]) -> AnnotationSet:
    return AnnotationSet(Path("/data/images"), CLASSES, records)


def _magnetic_tile_like(seed: int = 0, n_exp: int = 12) -> AnnotationSet:
    """Per-class folders like Magnetic Tile, file names prefixed by one of ``n_exp`` batches."""
    rng = random.Random(seed)
    counts = {1: 60, 2: 45, 3: 30, 4: 16, 5: 50, 0: 200}
    records = []
    for class_id, n in counts.items():
        folder = CLASSES.name(class_id) if class_id else "free"
        for i in range(n):
            name = f"MT_{folder}/Imgs/exp{rng.randrange(n_exp)}_num_{class_id}_{i}.jpg"
            records.append(_record(name, (class_id,) if class_id else ()))
    return _dataset(records)


def _classes_in(ann: AnnotationSet, splits: dict[str, str], split: str) -> set[int]:
    return {c for r in ann if splits[r.file_name] == split for c in r.class_ids()}


# --------------------------------------------------------------------------- make_splits


def test_seeded_and_independent_of_image_order() -> None:
    ann = _magnetic_tile_like()
    first = make_splits(ann, seed=3)
    shuffled = list(ann.images)
    random.Random(1).shuffle(shuffled)
    assert make_splits(_dataset(shuffled), seed=3) == first
    assert make_splits(ann, seed=3) == first
    assert make_splits(ann, seed=4) != first
    assert set(first) == {r.file_name for r in ann}


def test_fractions_roughly_honoured_per_class() -> None:
    ann = _magnetic_tile_like()
    splits = make_splits(ann, fractions=(0.7, 0.15, 0.15), seed=0)
    counts = Counter(splits.values())
    assert abs(counts["train"] / len(ann) - 0.7) < 0.02
    assert abs(counts["val"] / len(ann) - 0.15) < 0.02
    for class_id in CLASSES.ids:
        members = [r.file_name for r in ann if class_id in r.class_ids()]
        share = Counter(splits[m] for m in members)
        assert abs(share["train"] / len(members) - 0.7) <= 0.1, (class_id, share)
        assert share["val"] >= 1 and share["test"] >= 1


def test_fractions_are_normalised_and_empty_splits_allowed() -> None:
    ann = _magnetic_tile_like()
    splits = make_splits(ann, fractions=(8, 2, 0))
    counts = Counter(splits.values())
    assert counts["test"] == 0
    assert abs(counts["train"] / len(ann) - 0.8) < 0.02


@pytest.mark.parametrize("fractions", [(0.7, 0.3), (0.5, -0.1, 0.6), (0, 0, 0), (float("nan"), 0.5, 0.5)])
def test_bad_fractions(fractions) -> None:
    with pytest.raises(DataError, match="fractions"):
        make_splits(_magnetic_tile_like(), fractions=fractions)


def test_every_class_reaches_train_even_when_rare() -> None:
    records = [_record(f"neg_{i}.png") for i in range(40)]
    records += [_record("only_crack.png", (3,)), _record("fray_a.png", (4,)), _record("fray_b.png", (4,))]
    records += [_record(f"blow_{i}.png", (1,)) for i in range(3)]
    ann = _dataset(records)
    for seed in range(10):
        splits = make_splits(ann, seed=seed)
        assert _classes_in(ann, splits, "train") == {1, 3, 4}
        assert {1} <= _classes_in(ann, splits, "val") and {1} <= _classes_in(ann, splits, "test")


def test_signature_strata_negatives_and_unlabelled() -> None:
    records = [_record(f"neg_{i}.png") for i in range(20)]
    records += [_record(f"unl_{i}.png", annotated=False) for i in range(20)]
    records += [_record(f"tagged_ok_{i}.png", annotated=False, tags=()) for i in range(20)]
    ann = _dataset(records)
    splits = make_splits(ann)
    # Tagged-OK images are known negatives, so they share the "negative" stratum with neg_*.
    negative = Counter(s for name, s in splits.items() if not name.startswith("unl_"))
    unlabelled = Counter(s for name, s in splits.items() if name.startswith("unl_"))
    assert (negative["train"], negative["val"], negative["test"]) == (28, 6, 6)
    assert (unlabelled["train"], unlabelled["val"], unlabelled["test"]) == (14, 3, 3)


def test_groups_never_straddle_splits() -> None:
    ann = _magnetic_tile_like(n_exp=15)
    splits = make_splits(ann, group_by=MT_GROUP, seed=2)
    by_group: dict[str, set[str]] = {}
    for name, split in splits.items():
        group = Path(name).name.split("_")[0]
        by_group.setdefault(group, set()).add(split)
    assert all(len(s) == 1 for s in by_group.values()), by_group
    counts = Counter(splits.values())
    assert all(counts[s] > 0 for s in SPLITS)
    assert abs(counts["train"] / len(ann) - 0.7) < 0.12


def test_unmatched_names_are_their_own_group_and_whole_match_without_capture() -> None:
    records = [_record(f"lotA-{i}.png", (1,)) for i in range(10)]
    records += [_record(f"other_{i}.png", (1,)) for i in range(20)]
    ann = _dataset(records)
    splits = make_splits(ann, group_by=r"lot[A-Z]")
    assert len({splits[f"lotA-{i}.png"] for i in range(10)}) == 1
    assert len({splits[f"other_{i}.png"] for i in range(20)}) == 3  # ungrouped files spread out


def test_group_by_uses_basename_only() -> None:
    records = [_record(f"batch{i % 2}/img_{i}.png", (1,)) for i in range(20)]
    splits = make_splits(_dataset(records), group_by=r"^batch(\d)")
    assert len(set(splits.values())) == 3  # the folder does not match at the start of the basename


def test_bad_group_regex_and_duplicate_names() -> None:
    with pytest.raises(DataError, match="regular expression"):
        make_splits(_magnetic_tile_like(), group_by="exp(")
    with pytest.raises(DataError, match=r"repeated: a\.png"):
        make_splits(_dataset([_record("a.png"), _record("a.png")]))


def test_empty_dataset() -> None:
    assert make_splits(_dataset([])) == {}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    labels=st.lists(st.sets(st.integers(min_value=1, max_value=5), max_size=3), min_size=1, max_size=80),
    seed=st.integers(min_value=0, max_value=2**16),
    group_every=st.integers(min_value=1, max_value=6),
)
def test_property_complete_deterministic_and_grouped(
    labels: list[set[int]], seed: int, group_every: int
) -> None:
    records = [_record(f"g{i // group_every}_{i:03d}.png", tuple(sorted(c))) for i, c in enumerate(labels)]
    ann = _dataset(records)
    splits = make_splits(ann, seed=seed, group_by=r"^(g\d+)_")
    assert set(splits) == {r.file_name for r in records}
    assert set(splits.values()) <= set(SPLITS)
    assert make_splits(_dataset(list(reversed(records))), seed=seed, group_by=r"^(g\d+)_") == splits
    for g in {name.split("_")[0] for name in splits}:
        assert len({s for name, s in splits.items() if name.startswith(f"{g}_")}) == 1
    # Every class present in the data is trained on.
    assert _classes_in(ann, splits, "train") == {c for c_set in labels for c in c_set}


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=20, max_value=300), seed=st.integers(min_value=0, max_value=100))
def test_property_single_class_fractions(n: int, seed: int) -> None:
    splits = make_splits(_dataset([_record(f"{i:04d}.png", (2,)) for i in range(n)]), seed=seed)
    counts = Counter(splits.values())
    for split, fraction in zip(SPLITS, (0.7, 0.15, 0.15), strict=True):
        assert abs(counts[split] - n * fraction) <= 1.0


# --------------------------------------------------------------------------- the split file


def test_save_load_round_trip(tmp_path: Path) -> None:
    ann = _magnetic_tile_like()
    splits = make_splits(ann, seed=5, group_by=MT_GROUP)
    path = tmp_path / "splits.json"
    save_splits(splits, path, meta={"seed": 5, "fractions": (0.7, 0.15, 0.15), "group_by": MT_GROUP})
    assert load_splits(path) == splits
    doc = json.loads(path.read_text())
    assert doc["version"] == 1 and doc["seed"] == 5 and doc["group_by"] == MT_GROUP
    assert doc["fractions"] == [0.7, 0.15, 0.15]
    assert doc["counts"] == {s: sum(v == s for v in splits.values()) for s in SPLITS}
    assert list(doc["splits"]) == sorted(splits)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"version": 2, "splits": {}}', "version"),
        ('{"version": 1}', "'splits'"),
        ('{"version": 1, "splits": {"a.png": "holdout"}}', "unknown split name for a.png"),
    ],
)
def test_malformed_split_file_names_the_file(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "my_splits.json"
    path.write_text(content)
    with pytest.raises(DataError, match=problem) as info:
        load_splits(path)
    assert info.value.path == str(path)
    assert "my_splits.json" in str(info.value)


def test_missing_split_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_splits(tmp_path / "nope.json")


def test_apply_splits_strict_lists_missing_images() -> None:
    ann = _dataset([_record(f"img_{i}.png", (1,)) for i in range(8)])
    partial = {"img_0.png": "train", "img_1.png": "test"}
    with pytest.raises(DataError, match="6 image") as info:
        apply_splits(ann, partial, source="splits.json")
    message = str(info.value)
    assert message.startswith("splits.json")
    assert "img_2.png" in message and "img_6.png" in message and "img_7.png" not in message
    assert "and 1 more" in message
    assert all(r.split is None for r in ann)  # nothing half-applied


def test_apply_splits_sets_records_and_non_strict_reports() -> None:
    ann = _dataset([_record(f"img_{i}.png", (1,)) for i in range(3)])
    missing = apply_splits(ann, {"img_0.png": "train", "img_1.png": "val"}, strict=False)
    assert missing == ["img_2.png"]
    assert [r.split for r in ann] == ["train", "val", None]
    assert [r.file_name for r in ann.subset("val")] == ["img_1.png"]
    with pytest.raises(DataError, match="unknown split"):
        apply_splits(ann, {"img_0.png": "dev"}, strict=False)


def test_splits_for_writes_once_and_reuses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ann = _magnetic_tile_like()
    path = tmp_path / "split" / "splits.json"
    first = splits_for(ann, path, seed=1, group_by=MT_GROUP)
    assert path.is_file()
    assert json.loads(path.read_text())["group_by"] == MT_GROUP
    stamp = path.read_bytes()
    again = splits_for(ann, path, seed=99)  # the stored split wins
    assert again == first
    assert path.read_bytes() == stamp
    assert "seed=99" in caplog.text


def test_splits_for_refuses_a_file_that_does_not_cover_the_data(tmp_path: Path) -> None:
    ann = _dataset([_record(f"img_{i}.png", (1,)) for i in range(10)])
    path = tmp_path / "splits.json"
    splits_for(ann, path)
    bigger = _dataset([*ann.images, _record("new.png", (2,))])
    with pytest.raises(DataError, match=r"new\.png") as info:
        splits_for(bigger, path)
    assert info.value.path == str(path)


# --------------------------------------------------------------------------- splits a dataset declares


def _declared(names: list[str], class_ids: tuple[int, ...] = (1,)) -> AnnotationSet:
    return _dataset([_record(name, class_ids if i % 2 else ()) for i, name in enumerate(names)])


def test_split_folders_at_any_level_are_the_split_and_val_is_carved_from_train() -> None:
    train = [f"training/part{i % 2}/t{i:02d}.png" for i in range(40)]
    test = [f"Testing/x{i}.png" for i in range(10)]
    splits, meta = choose_splits(_declared(train + test), seed=3)
    assert {splits[n] for n in test} == {"test"}  # the official test images, every one
    assert {splits[n] for n in train} == {"train", "val"}  # none of them goes to test
    assert Counter(splits[n] for n in train)["val"] == round(40 * 0.15 / 0.85)
    assert meta["carved"] == ["val"] and meta["source"].startswith("declared by the dataset")
    assert choose_splits(_declared(train + test), seed=3)[0] == splits  # seeded


def test_declared_val_is_kept_and_nothing_is_carved() -> None:
    names = ["train/a.png", "train/b.png", "valid/c.png", "test/d.png"]
    splits, meta = choose_splits(_declared(names))
    assert splits == {
        "train/a.png": "train",
        "train/b.png": "train",
        "valid/c.png": "val",
        "test/d.png": "test",
    }
    assert meta["carved"] == []


def test_a_reader_split_wins_over_folder_names() -> None:
    records = [_record("test/a.png"), _record("b.png"), _record("c.png")]
    records[0].split, records[1].split, records[2].split = "training", "val", "test"
    assert declared_splits(_dataset(records)) == {"test/a.png": "train", "b.png": "val", "c.png": "test"}


def test_no_declared_split_makes_one() -> None:
    ann = _declared([f"img{i}.png" for i in range(20)])
    assert declared_splits(ann) is None
    splits, meta = choose_splits(ann, seed=1)
    assert splits == make_splits(ann, seed=1) and meta["source"].startswith("made by weakseg")


def test_images_outside_the_declared_folders_are_an_error_naming_them() -> None:
    with pytest.raises(DataError, match=r"extra/loose\.png \(1 image"):
        declared_splits(_declared(["train/a.png", "test/b.png", "extra/loose.png"]))
    with pytest.raises(DataError, match="no train split"):
        declared_splits(_declared(["val/a.png", "test/b.png"]))


def test_user_split_file_json_and_csv(tmp_path: Path) -> None:
    ann = _declared(["a.png", "b.png", "c.png"])
    (tmp_path / "s.json").write_text(json.dumps({"a.png": "train", "b.png": "validation", "c.png": "test"}))
    (tmp_path / "s.csv").write_text("file_name,split\na.png,train\nb.png,val\nc.png,testing\n")
    for name in ("s.json", "s.csv"):
        splits, meta = choose_splits(ann, user_file=tmp_path / name)
        assert splits == {"a.png": "train", "b.png": "val", "c.png": "test"}
        assert meta["source"] == f"file {(tmp_path / name).resolve()}"
    (tmp_path / "bad.csv").write_text("a.png,train\nb.png,holdout\n")
    with pytest.raises(DataError, match=r"bad\.csv.*line 2: unknown split 'holdout'"):
        read_user_splits(tmp_path / "bad.csv")
    (tmp_path / "short.csv").write_text("a.png,train\n")
    with pytest.raises(
        DataError, match=r"short\.csv.*2 image\(s\) are not in the split file: b\.png, c\.png"
    ):
        choose_splits(ann, user_file=tmp_path / "short.csv")


def test_splits_for_records_the_source_and_keeps_the_stored_file(tmp_path: Path) -> None:
    ann = _declared(["train/a.png", "train/b.png", "train/c.png", "test/d.png"])
    splits = splits_for(ann, tmp_path / "splits.json")
    assert splits["test/d.png"] == "test"
    assert split_source(tmp_path / "splits.json").startswith("declared by the dataset (val carved")
    (tmp_path / "other.csv").write_text(
        "train/a.png,test\ntrain/b.png,train\ntrain/c.png,val\ntest/d.png,train\n"
    )
    with pytest.raises(DataError, match=r"splits\.json.*holds another split than .*other\.csv"):
        splits_for(ann, tmp_path / "splits.json", user_file=tmp_path / "other.csv")
    (tmp_path / "same.json").write_text(json.dumps(splits))
    assert splits_for(ann, tmp_path / "splits.json", user_file=tmp_path / "same.json") == splits
