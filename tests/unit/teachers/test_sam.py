"""The ``sam`` teacher on the official ``segment-anything`` package.

The end-to-end tests build the official ``vit_b`` architecture with random weights (no checkpoint can
be downloaded in CI), save its state dict and run the whole teacher path on it. The masks of a random
model mean nothing; the tests check shapes, clipping, scores, batching, zoom and determinism. One
image embedding costs ~15 s on two CPU cores, so one teacher and one prediction (two embeddings: the
full image and one zoomed crop) are shared across the asserts.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from segment_anything import sam_model_registry

from weakseg.errors import DataError, WeaksegError
from weakseg.teachers import PseudoMask, TeacherOutput, create_teacher
from weakseg.teachers.refine import box_slices
from weakseg.teachers.sam import MISSING_CHECKPOINT, MISSING_EXTRA, zoom_windows

H, W = 96, 128
#: Two large boxes (one shared embedding, one batched decode) and one small box (zoomed crop):
#: SAM's input scale is 1024 / 128 = 8, so a long side under 256 / 8 = 32 pixels is small.
BOXES = np.array([[10, 8, 60, 50], [70, 40, 122, 90], [40.5, 60, 52, 70.5]], dtype=float)
CLASSES = np.array([0, 1, 0])


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(110, 8, (H, W)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:H, :W]
    image[(yy - 29) ** 2 + (xx - 35) ** 2 <= 15**2] = 40
    image[45:85, 78:115] = 200
    image[62:69, 42:50] = 240
    return image


def _inside_box(mask: np.ndarray, box: np.ndarray) -> bool:
    region = np.zeros(mask.shape, dtype=bool)
    region[box_slices(tuple(box), mask.shape)] = True
    return not (mask & ~region).any()


@pytest.fixture(scope="module")
def vit_b_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(0)
    model = sam_model_registry["vit_b"](checkpoint=None)
    path = tmp_path_factory.mktemp("sam") / "random_vit_b.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def sam_run(vit_b_checkpoint: Path):
    """One teacher (model type auto) and its prediction on the test image."""
    teacher = create_teacher("sam", checkpoint=vit_b_checkpoint)
    outputs = teacher.predict(_image(), BOXES, CLASSES)
    return teacher, outputs


# -- cheap tests (no model) ---------------------------------------------------------------------


def test_module_imports_without_touching_segment_anything(tmp_path: Path) -> None:
    ckpt = tmp_path / "x.pth"
    ckpt.write_bytes(b"not used")
    code = (
        "import sys\n"
        "import weakseg.teachers.sam as s\n"
        "from weakseg.teachers import teacher_names, create_teacher\n"
        "assert 'sam' in teacher_names()\n"
        f"t = create_teacher('sam', checkpoint={str(ckpt)!r})\n"
        "assert sys.modules.get('segment_anything') is None\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_missing_checkpoint_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "sam_vit_b.pth"
    with pytest.raises(DataError) as info:
        create_teacher("sam", checkpoint=missing)
    assert info.value.path is not None and info.value.path.endswith("sam_vit_b.pth")
    assert info.value.problem == MISSING_CHECKPOINT
    assert "download one of the official vit_b/vit_l/vit_h" in str(info.value)


def test_missing_extra_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = tmp_path / "x.pth"
    ckpt.write_bytes(b"not used")
    teacher = create_teacher("sam", checkpoint=ckpt)
    monkeypatch.setitem(sys.modules, "segment_anything", None)  # makes the import fail
    with pytest.raises(WeaksegError, match=r"pip install 'weakseg\[sam\]'") as info:
        teacher.predict(_image(), BOXES, CLASSES)
    assert str(info.value) == MISSING_EXTRA


def test_bad_options() -> None:
    with pytest.raises(WeaksegError, match="model_type"):
        create_teacher("sam", checkpoint=__file__, model_type="vit_x")
    with pytest.raises(WeaksegError, match="bad option"):
        create_teacher("sam", checkpoint=__file__, nonsense=1)


def test_config_hash_uses_path_size_mtime(tmp_path: Path) -> None:
    ckpt = tmp_path / "a.pth"
    ckpt.write_bytes(b"12345")
    teacher = create_teacher("sam", checkpoint=ckpt)
    config = teacher.config()
    assert config["checkpoint"] == str(ckpt.resolve())
    assert config["checkpoint_size"] == 5 and "checkpoint_mtime_ns" in config
    assert config["model_type"] == "auto" and config["multimask"] is True
    before = teacher.config_hash()
    ckpt.write_bytes(b"123456")
    assert create_teacher("sam", checkpoint=ckpt).config_hash() != before
    assert create_teacher("sam", checkpoint=ckpt, multimask=False).config_hash() != before
    # picklable for worker processes
    clone = pickle.loads(pickle.dumps(teacher))
    assert clone.config() == teacher.config()


def test_zoom_rule() -> None:
    windows = zoom_windows(BOXES, (H, W), 1024, 256, 1.0)
    assert windows[0] is None and windows[1] is None
    rows, cols = windows[2]
    # box long side 11.5 -> margin 12 on every side, clipped to the image
    assert (rows.start, rows.stop, cols.start, cols.stop) == (48, 83, 28, 64)
    # a window as large as the image gains nothing: no zoom
    assert zoom_windows(np.array([[0, 0, 20, 20]]), (40, 40), 1024, 1000, 1.0) == [None]
    # nothing is zoomed when every box is large enough at SAM's input scale
    assert zoom_windows(BOXES, (H, W), 1024, 8, 1.0) == [None, None, None]


def test_unreadable_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "garbage.pth"
    ckpt.write_bytes(b"this is not a checkpoint")
    teacher = create_teacher("sam", checkpoint=ckpt)
    with pytest.raises(DataError, match="cannot read SAM checkpoint") as info:
        teacher.predict(_image(), BOXES, CLASSES)
    assert info.value.path == str(ckpt.resolve())


@pytest.mark.slow
def test_wrong_model_type(tmp_path: Path, vit_b_checkpoint: Path) -> None:
    import torch

    teacher = create_teacher("sam", checkpoint=vit_b_checkpoint, model_type="vit_h")
    with pytest.raises(DataError, match=r"does not fit SAM model type 'vit_h'.*vit_b") as info:
        teacher.predict(_image(), BOXES, CLASSES)
    assert info.value.path == str(vit_b_checkpoint.resolve())

    # a file whose encoder looks like vit_b but whose tensors do not fit it
    odd = tmp_path / "odd_vit_b.pth"
    state = {f"image_encoder.blocks.{i}.norm1.weight": torch.zeros(768) for i in range(12)}
    state["image_encoder.pos_embed"] = torch.zeros(1, 64, 64, 768)
    torch.save(state, odd)
    with pytest.raises(
        DataError, match=r"does not fit SAM model type 'vit_b' \(inferred by model_type='auto'"
    ):
        create_teacher("sam", checkpoint=odd).predict(_image(), BOXES, CLASSES)

    # an encoder that is none of the official ones
    alien = tmp_path / "alien.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1, 64, 64, 100)}, alien)
    with pytest.raises(DataError, match=r"cannot infer the SAM model type \(model_type='auto'\)"):
        create_teacher("sam", checkpoint=alien).predict(_image(), BOXES, CLASSES)


# -- the official vit_b, randomly initialised --------------------------------------------------


@pytest.mark.slow
def test_predict_end_to_end(sam_run) -> None:
    teacher, outputs = sam_run
    assert teacher.resolved_model_type == "vit_b"
    assert len(outputs) == len(BOXES)
    for out, box in zip(outputs, BOXES, strict=True):
        assert isinstance(out, TeacherOutput)
        assert out.mask.shape == (H, W) and out.mask.dtype == bool
        assert _inside_box(out.mask, box)
        assert 0.0 <= out.confidence <= 1.0
    # one embedding for the two large boxes, one for the zoomed crop of the small one
    assert len(teacher._sam.cache) == 2


@pytest.mark.slow
def test_label_and_rgb_input(sam_run) -> None:
    teacher, outputs = sam_run
    image = _image()
    pseudo = teacher.label(np.repeat(image[..., None], 3, axis=2), BOXES, CLASSES)
    assert len(pseudo) == len(BOXES)
    for pm, out, box in zip(pseudo, outputs, BOXES, strict=True):
        assert isinstance(pm, PseudoMask)
        assert pm.mask.shape == (H, W) and _inside_box(pm.mask, box)
        assert 0.0 <= pm.quality <= 1.0 and 0.0 <= pm.confidence <= 1.0
        assert pm.confidence == pytest.approx(out.confidence)
    assert len(teacher._sam.cache) == 2  # gray and its 3-channel copy are the same RGB image


@pytest.mark.slow
def test_single_mask_mode(sam_run, vit_b_checkpoint: Path) -> None:
    teacher, _ = sam_run
    single = create_teacher("sam", checkpoint=vit_b_checkpoint, multimask=False, model_type="vit_b")
    assert single.config_hash() != teacher.config_hash()
    outputs = single.predict(_image(), BOXES, CLASSES)
    assert single.resolved_model_type == "vit_b"
    assert len(outputs) == len(BOXES)
    for out, box in zip(outputs, BOXES, strict=True):
        assert out.mask.shape == (H, W) and out.mask.dtype == bool and _inside_box(out.mask, box)
        assert 0.0 <= out.confidence <= 1.0


@pytest.mark.slow
def test_deterministic_and_picklable(sam_run) -> None:
    teacher, outputs = sam_run
    # same image again: decoding from the cached embeddings reproduces every box
    again = teacher.predict(_image(), BOXES, CLASSES)
    for a, b in zip(outputs, again, strict=True):
        assert np.array_equal(a.mask, b.mask) and a.confidence == b.confidence
    # recompute an embedding from scratch (the small box's crop): same answer
    clone = pickle.loads(pickle.dumps(teacher))
    assert clone._sam is None
    clone.clear_embedding_cache()
    teacher.clear_embedding_cache()
    (fresh,) = clone.predict(_image(), BOXES[2:], CLASSES[2:])
    assert np.array_equal(fresh.mask, outputs[2].mask) and fresh.confidence == outputs[2].confidence


@pytest.mark.slow
def test_degenerate_and_empty_boxes(sam_run) -> None:
    teacher, _ = sam_run
    assert teacher.predict(_image(), np.zeros((0, 4)), np.zeros(0)) == []
    # a box outside the image and a zero-area box: empty masks, zero confidence, no SAM call needed
    (outside, flat) = teacher.predict(_image(), np.array([[200, 200, 220, 230], [5, 5, 5, 30]]), np.zeros(2))
    for out in (outside, flat):
        assert not out.mask.any() and out.confidence == 0.0
