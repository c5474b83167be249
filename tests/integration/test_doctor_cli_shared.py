"""``weakseg doctor --json`` on the real datasets reports the published counts (skips without the data)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.shared_data


def _doctor_json(path: Path, *extra: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "weakseg", "doctor", str(path), "--json", *extra],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_magnetic_tile_doctor(magnetic_tile: Path) -> None:
    report = _doctor_json(magnetic_tile)
    assert report["format"] == "masks"
    assert report["images"] == 1344
    assert report["instances"] == 442
    assert report["per_class"] == {"Blowhole": 118, "Break": 117, "Crack": 70, "Fray": 38, "Uneven": 99}
    assert report["negative_images"] == 952
    assert report["errors"] == []
    assert len(report["warnings"]) == 6  # the Uneven images whose masks hold no usable defect


def test_crackforest_doctor(crackforest: Path) -> None:
    report = _doctor_json(crackforest, "--value-map", "2,4=crack")
    assert report["format"] == "bsds"
    assert report["annotated_images"] == 118
    assert report["unannotated_images"] == 37
    assert report["instances"] == 276
    assert report["per_class"] == {"crack": 276}
    assert report["errors"] == []
