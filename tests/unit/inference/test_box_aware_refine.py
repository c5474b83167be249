"""Box-aware refine: the per-box threshold, flip test-time augmentation and fusion in the student teacher."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from weakseg.annotations import masks as mask_ops
from weakseg.annotations.images import read_image, resolve_inside
from weakseg.annotations.readers import load_annotations
from weakseg.errors import WeaksegError
from weakseg.inference.refine import refine
from weakseg.inference.teacher import StudentTeacher, _box_key, parse_threshold
from weakseg.pseudolabel.store import PseudoStore
from weakseg.teachers import create_teacher
from weakseg.teachers.box_threshold import box_mask, spans
from weakseg.teachers.refine import box_slices

H, W = 48, 64
BOX = (10.0, 8.0, 50.0, 38.0)  # x0, y0, x1, y1: 40 x 30 pixels


class FakePredictor:
    """Stands in for :class:`~weakseg.inference.predictor.Predictor`: foreground ``fg(image)``, two
    channels (background, one defect class); records the images it was given."""

    def __init__(self, fg: Callable[[np.ndarray], np.ndarray], threshold: float = 0.5) -> None:
        self.fg = fg
        self.threshold = threshold
        self.seen: list[np.ndarray] = []

    def probabilities(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.seen.extend(images)
        out = []
        for image in images:
            fg = self.fg(image).astype(np.float32)
            out.append(np.stack([1.0 - fg, fg]))
        return out


def _teacher(run: Path, predictor: FakePredictor, **config: object) -> StudentTeacher:
    teacher = StudentTeacher(str(run), **config)  # type: ignore[arg-type]
    teacher._predictor = predictor
    return teacher


def _halo_in_box() -> np.ndarray:
    """Foreground: a sure core fading to 0.25 at the box's edges (0 outside), symmetric in x."""
    x0, y0, x1, y1 = (int(v) for v in BOX)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    cy, cx, ry, rx = (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2, (y1 - y0 - 1) / 2, (x1 - x0 - 1) / 2
    r = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    fg = np.zeros((H, W), np.float32)
    fg[y0:y1, x0:x1] = np.clip(0.95 - 0.7 * r, 0.0, 1.0)
    return fg


def _crop(mask: np.ndarray) -> np.ndarray:
    return mask[box_slices(BOX, (H, W))]


def _predict(
    teacher: StudentTeacher, image: np.ndarray, box: tuple[float, ...] = BOX
) -> tuple[np.ndarray, float]:
    [out] = teacher.predict(image, np.array([box]), np.array([1]))
    return out.mask, out.confidence


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (H, W), dtype=np.uint8)


def test_per_box_threshold_is_the_default_and_spans_the_box(trained, image: np.ndarray) -> None:
    halo = _halo_in_box()
    box_teacher = _teacher(trained.run, FakePredictor(lambda _: halo), tta=False)
    fixed = _teacher(trained.run, FakePredictor(lambda _: halo), threshold=0.5, tta=False)
    assert box_teacher.config()["threshold"] == "box"
    mask, confidence = _predict(box_teacher, image)
    assert spans(_crop(mask))
    outside = np.ones((H, W), bool)
    outside[box_slices(BOX, (H, W))] = False
    assert mask.any() and not (mask & outside).any()
    assert not spans(_crop(_predict(fixed, image)[0]))  # the fixed 0.5 leaves the halo out
    assert _predict(fixed, image)[0].sum() < mask.sum()
    assert confidence == pytest.approx(float(halo[mask].mean()))  # mean probability inside the mask


def test_per_box_threshold_is_capped_by_the_run_decision(trained, image: np.ndarray) -> None:
    full = np.zeros((H, W), np.float32)
    full[box_slices(BOX, (H, W))] = 0.9
    full[20:25, 25:30] = 0.4  # a faint patch: inside the mask at a cap of 0.3, outside at 0.5
    at_run = _teacher(trained.run, FakePredictor(lambda _: full, threshold=0.3), tta=False)
    assert at_run.cap() == 0.3  # the predictor's validated threshold
    assert _predict(at_run, image)[0][20:25, 25:30].all()
    capped = _teacher(trained.run, FakePredictor(lambda _: full, threshold=0.3), tta=False, max_threshold=0.5)
    assert capped.cap() == 0.5 and capped.config()["max_threshold"] == 0.5
    assert not _predict(capped, image)[0][20:25, 25:30].any()


def test_tta_averages_the_image_and_its_mirror(trained, image: np.ndarray) -> None:
    ramp = np.broadcast_to(np.linspace(0.0, 1.0, W, dtype=np.float32), (H, W))

    def fg(img: np.ndarray) -> np.ndarray:  # content-driven, plus a bias towards the right
        return 0.5 * img / 255.0 + 0.5 * ramp

    predictor = FakePredictor(fg)
    teacher = _teacher(trained.run, predictor)
    assert teacher.config()["tta"] is True
    prob = teacher.probabilities(image)
    assert np.array_equal(predictor.seen[1], image[:, ::-1])  # the mirror went through the predictor
    # The bias averages out to a constant 0.25 (the ramp plus its mirror is 1); the content stays.
    np.testing.assert_allclose(prob[1], 0.5 * image / 255.0 + 0.25, atol=1e-6)
    np.testing.assert_allclose(prob[0] + prob[1], 1.0, atol=1e-6)
    mirrored = teacher.probabilities(np.ascontiguousarray(image[:, ::-1]))
    assert np.array_equal(mirrored, prob[:, :, ::-1])
    plain = _teacher(trained.run, FakePredictor(fg), tta=False).probabilities(image)
    assert np.abs(plain[1] - fg(image)).max() < 1e-6 and np.abs(plain - prob).max() > 0.2


def test_fusion_comes_before_the_per_box_threshold(trained, image: np.ndarray) -> None:
    halo = _halo_in_box()
    teacher_mask = np.zeros((H, W), bool)
    teacher_mask[15:31, 12:48] = True  # the teacher's mask: wider than the student's core
    teacher = _teacher(trained.run, FakePredictor(lambda _: halo), tta=False, pseudo=str(trained.store))
    teacher._teacher_index = {_box_key((H, W), 1, BOX): (mask_ops.encode(teacher_mask), 0.8)}
    mask, _ = _predict(teacher, image)
    rows, cols = box_slices(BOX, (H, W))
    fused = (1.0 * halo[rows, cols] + 0.8 * teacher_mask[rows, cols]) / 1.8
    expected, t = box_mask(fused, 0.5)
    assert np.array_equal(_crop(mask), expected) and spans(expected)
    assert not np.array_equal(expected, box_mask(halo[rows, cols], 0.5)[0])  # fusion changed the mask
    assert not np.array_equal(expected, fused > 0.5)  # and the box threshold was applied to it
    assert t < 0.5


def test_flipped_image_gives_the_flipped_masks(trained) -> None:
    """The trained student is not mirror-symmetric; with TTA its masks are."""
    ann = load_annotations(trained.data)
    record = max(ann.images, key=lambda r: len(r.instances))
    image = read_image(resolve_inside(ann.root, record.file_name))
    w = image.shape[1]
    boxes = np.array(
        [
            [np.floor(b[0]), np.floor(b[1]), np.ceil(b[2]), np.ceil(b[3])]
            for b in (i.box for i in record.instances)
        ]
    )
    mirrored_boxes = boxes.copy()
    mirrored_boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    class_ids = np.array([i.class_id for i in record.instances])
    mirror = np.ascontiguousarray(np.flip(image, axis=1))

    teacher = StudentTeacher(str(trained.run))
    plain = StudentTeacher(str(trained.run), tta=False)
    plain._predictor = teacher._get_predictor()  # one model for both
    gap = np.abs(plain.probabilities(mirror) - np.flip(plain.probabilities(image), axis=-1)).max()
    assert gap > 1e-5  # without TTA the mirror's probabilities differ

    np.testing.assert_allclose(
        teacher.probabilities(mirror), np.flip(teacher.probabilities(image), axis=-1), atol=1e-6
    )
    outputs = teacher.predict(image, boxes, class_ids)
    flipped = teacher.predict(mirror, mirrored_boxes, class_ids)
    assert any(o.mask.any() for o in outputs)
    for a, b in zip(outputs, flipped, strict=True):
        assert np.array_equal(np.flip(a.mask, axis=1), b.mask)
        assert a.confidence == pytest.approx(b.confidence, abs=1e-5)


def test_settings_are_in_the_store_config_and_do_not_mix(trained, tmp_path: Path) -> None:
    out = tmp_path / "refined"
    result = refine(trained.run, trained.data, out)
    assert result.failed == 0 and result.merged is not None
    config = PseudoStore(out).meta()["config"]
    assert config["threshold"] == "box" and config["tta"] is True and "decision" in config
    decision = trained.run / "decision.json"
    assert config["decision"] == (json.loads(decision.read_text()) if decision.is_file() else None)
    with pytest.raises(WeaksegError, match="different config hash"):
        refine(trained.run, trained.data, out, threshold=0.5)
    with pytest.raises(WeaksegError, match="different config hash"):
        refine(trained.run, trained.data, out, tta=False)


def test_threshold_values(trained) -> None:
    assert parse_threshold("box") == "box" and parse_threshold(" BOX ") == "box"
    assert parse_threshold("0.4") == 0.4 and parse_threshold(0.5) == 0.5  # old spellings still work
    for bad in ("boxes", 0.0, 1.0, "1.5", True):
        with pytest.raises(ValueError, match="threshold must be"):
            parse_threshold(bad)  # type: ignore[arg-type]
    assert create_teacher("student", run=str(trained.run), threshold="0.4").config()["threshold"] == 0.4
    with pytest.raises(WeaksegError, match="max_threshold caps"):
        create_teacher("student", run=str(trained.run), threshold=0.4, max_threshold=0.3)
    with pytest.raises(WeaksegError, match="max_threshold must be"):
        create_teacher("student", run=str(trained.run), max_threshold=1.2)


def test_cli_fixed_threshold_without_tta(trained, tmp_path: Path, run_cli) -> None:
    out = tmp_path / "fixed"
    result = run_cli(
        "refine", trained.run, trained.data, "--out", out, "--threshold", "0.5", "--no-tta", "--json"
    )
    assert result.returncode == 0, result.stderr
    config = PseudoStore(out).meta()["config"]
    assert config["threshold"] == 0.5 and config["tta"] is False and "max_threshold" not in config
