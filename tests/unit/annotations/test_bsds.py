"""The ``bsds`` reader: groundTruth/*.mat label maps as CrackForest ships them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from weakseg.annotations.masks import decode
from weakseg.annotations.readers import ReadOptions, detect_format
from weakseg.annotations.readers.bsds import _detect, read_bsds, read_segmentations
from weakseg.annotations.readers.mask_folder import _detect as detect_masks
from weakseg.annotations.readers.tags import _detect as detect_tags
from weakseg.annotations.schema import AnnotationSet
from weakseg.errors import IssueLog

H, W = 32, 48


def photo(path: Path, h: int = H, w: int = W, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def save_gt(path: Path, *segs: np.ndarray) -> None:
    """One annotator as a 1x1 struct (CrackForest); several as a 1xN cell of structs (BSDS500)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    structs = [{"Segmentation": s, "Boundaries": np.zeros_like(s)} for s in segs]
    if len(structs) == 1:
        savemat(path, {"groundTruth": structs[0]})
        return
    cells = np.empty((1, len(structs)), dtype=object)
    for k, s in enumerate(structs):
        cells[0, k] = s
    savemat(path, {"groundTruth": cells})


def crack_map() -> np.ndarray:
    """1 pavement, 2 a crack stroke, 3 pavement enclosed by it, 4 a separate thin stroke."""
    seg = np.ones((H, W), np.uint8)
    seg[4:20, 4] = seg[4:20, 14] = seg[4, 4:15] = seg[19, 4:15] = 2  # a closed loop of crack
    seg[5:19, 5:14] = 3  # enclosed pavement: NOT crack
    seg[28, 20:40] = 4  # thin stroke
    seg[30, 0:3] = 2  # 3 px speck
    return seg


def read(path: Path, **kw) -> tuple[AnnotationSet, IssueLog]:
    log = IssueLog()
    return read_bsds(path, ReadOptions(**kw), log), log


@pytest.fixture
def cfd(tmp_path: Path) -> Path:
    data = tmp_path / "cfd"
    for k, stem in enumerate(("001", "002", "201")):
        photo(data / "image" / f"{stem}.jpg", seed=k)
    save_gt(data / "groundTruth" / "001.mat", crack_map())
    save_gt(data / "groundTruth" / "002.mat", np.ones((H, W), np.uint8))
    return data


def test_crackforest_convention(cfd: Path) -> None:
    ann, log = read(cfd)
    assert not log.issues
    assert ann.root == cfd / "image" and ann.class_map.names == ("crack",)
    recs = ann.by_file_name()
    loop, stroke = recs["001.jpg"].instances
    assert loop.box == (4.0, 4.0, 15.0, 20.0) and stroke.box == (20.0, 28.0, 40.0, 29.0)
    assert decode(loop.mask).sum() == (crack_map() == 2).sum() - 3  # value 3 inside is not crack
    assert recs["001.jpg"].source == str(cfd / "groundTruth" / "001.mat")
    assert recs["002.jpg"].annotated and recs["002.jpg"].instances == []
    unlabelled = recs["201.jpg"]
    assert unlabelled.annotated is False and not unlabelled.is_negative


def test_value_map_override(cfd: Path) -> None:
    ann, _ = read(cfd, value_map={2: "crack", 3: "patch"})
    assert ann.class_map.names == ("crack", "patch")
    ids = [i.class_id for i in ann.by_file_name()["001.jpg"].instances]
    assert sorted(ids) == [1, 2]


def test_images_folder_and_nested_splits(tmp_path: Path) -> None:
    data = tmp_path / "bsds"
    photo(data / "images" / "train" / "x.jpg")
    save_gt(data / "groundTruth" / "train" / "x.mat", crack_map())
    ann, _ = read(data)
    [rec] = ann.images
    assert rec.file_name == "train/x.jpg" and len(rec.instances) == 2


def test_several_annotators_use_the_first_and_warn_once(cfd: Path) -> None:
    other = np.ones((H, W), np.uint8)
    save_gt(cfd / "groundTruth" / "001.mat", crack_map(), other)
    save_gt(cfd / "groundTruth" / "002.mat", other, crack_map())
    ann, log = read(cfd)
    assert len(ann.by_file_name()["001.jpg"].instances) == 2
    assert ann.by_file_name()["002.jpg"].instances == []
    [warn] = log.warnings
    assert "2 .mat file(s) hold several annotators" in warn.problem
    assert len(read_segmentations(cfd / "groundTruth" / "001.mat")) == 2


@pytest.mark.parametrize(
    "content",
    [b"garbage, not a MAT file", None],
    ids=["unreadable", "no-groundTruth-variable"],
)
def test_malformed_mat_is_an_error_and_image_unannotated(cfd: Path, content: bytes | None) -> None:
    bad = cfd / "groundTruth" / "002.mat"
    if content is None:
        savemat(bad, {"somethingElse": np.ones((2, 2))})
    else:
        bad.write_bytes(content)
    ann, log = read(cfd)
    [err] = log.errors
    assert err.path == str(bad)
    rec = ann.by_file_name()["002.jpg"]
    assert rec.annotated is False and rec.instances == []


def test_segmentation_size_mismatch(cfd: Path) -> None:
    save_gt(cfd / "groundTruth" / "001.mat", np.full((10, 12), 2, np.uint8))
    ann, log = read(cfd)
    [err] = log.errors
    assert err.path == str(cfd / "groundTruth" / "001.mat") and err.problem.startswith("mask is 12x10")
    assert ann.by_file_name()["001.jpg"].annotated is False


def test_orphan_mat_is_a_warning(cfd: Path) -> None:
    save_gt(cfd / "groundTruth" / "999.mat", crack_map())
    _, log = read(cfd)
    assert [w.path for w in log.warnings] == [str(cfd / "groundTruth" / "999.mat")]


def test_detection(cfd: Path, tmp_path: Path) -> None:
    assert _detect(cfd) and detect_format(cfd) == "bsds"
    assert not detect_masks(cfd) and not detect_tags(cfd)
    assert not _detect(cfd / "image") and not _detect(tmp_path / "missing")
