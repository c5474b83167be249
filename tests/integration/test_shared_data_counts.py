"""The real datasets read with format auto-detection must give the counts their SOURCE.md documents."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from weakseg.annotations import detect_format, load_annotations
from weakseg.errors import IssueLog

pytestmark = pytest.mark.shared_data


def test_magnetic_tile_counts(magnetic_tile: Path) -> None:
    assert detect_format(magnetic_tile) == "masks"
    log = IssueLog()
    start = time.perf_counter()
    ann = load_annotations(magnetic_tile, issues=log)
    seconds = time.perf_counter() - start
    assert ann.format == "masks"
    assert ann.class_map.names == ("Blowhole", "Break", "Crack", "Fray", "Uneven")
    assert len(ann) == 1344
    per_class = Counter(ann.class_map.name(inst.class_id) for _, inst in ann.instances())
    assert per_class == {"Blowhole": 118, "Break": 117, "Crack": 70, "Fray": 38, "Uneven": 99}
    assert sum(1 for r in ann if r.instances) == 386
    assert sum(1 for r in ann if r.tags == ()) == 952
    assert sum(not r.annotated for r in ann) == 6  # the Uneven images without a usable mask: tag-only
    assert not log.errors
    unusable = sorted(Path(w.path).name for w in log.warnings)
    assert unusable == [
        "exp3_num_24829.png",
        "exp3_num_45042.png",
        "exp4_num_124690.png",
        "exp4_num_24843.png",
        "exp4_num_352527.png",
        "exp4_num_45057.png",
    ]
    assert all("folder says Uneven" in w.problem for w in log.warnings)
    assert seconds < 30, f"reading Magnetic Tile took {seconds:.1f} s"


def test_crackforest_counts(crackforest: Path) -> None:
    assert detect_format(crackforest) == "bsds"
    log = IssueLog()
    ann = load_annotations(crackforest, issues=log)
    assert ann.format == "bsds"
    assert ann.class_map.names == ("crack",)
    assert len(ann) == 155
    assert sum(r.annotated for r in ann) == 118
    unlabelled = [r for r in ann if not r.annotated]
    assert len(unlabelled) == 37 and not any(r.is_negative for r in unlabelled)
    assert sum(len(r.instances) for r in ann) == 276
    assert all(r.instances for r in ann if r.annotated)  # every labelled image has a crack
    assert not log.issues
