"""The shared pre/post-processing path: original sizes, batching, label maps, instances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from weakseg.annotations import masks as mask_ops
from weakseg.errors import DataError
from weakseg.inference.predictor import Predictor, prediction_record
from weakseg.inference.run import is_run_dir, load_run


def test_probabilities_at_original_size_and_batched_equals_unbatched(trained) -> None:
    predictor = Predictor(trained.run, batch_size=3)
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (37, 53, 3), dtype=np.uint8),  # odd, non-square, smaller than training size
        rng.integers(0, 256, (64, 64), dtype=np.uint8),  # gray, exactly the training size
        rng.integers(0, 256, (101, 29, 3), dtype=np.uint8),  # taller than wide, one side larger
        rng.integers(0, 256, (130, 150, 3), dtype=np.uint8),  # larger on both sides (area resize)
    ]
    k1 = len(predictor.class_map) + 1
    batched = predictor.probabilities(images)
    single = [predictor.probabilities([image])[0] for image in images]
    for image, b, s in zip(images, batched, single, strict=True):
        assert b.shape == (k1, *image.shape[:2]) and b.dtype == np.float32
        np.testing.assert_allclose(b.sum(axis=0), 1.0, atol=1e-4)
        np.testing.assert_allclose(b, s, atol=1e-5)
        labels = predictor.label_map(b)
        assert labels.shape == image.shape[:2] and labels.max() < k1


def test_prediction_record_one_instance_per_component() -> None:
    prob = np.zeros((3, 20, 30), dtype=np.float32)
    prob[0] = 1.0
    for cls, (rows, cols, p) in {
        1: ((slice(2, 6), slice(2, 8), 0.9)),
        2: ((slice(10, 15), slice(20, 28), 0.7)),
    }.items():
        prob[0][rows, cols] = 1 - p
        prob[cls][rows, cols] = p
    prob[0, 16:19, 2:5], prob[1, 16:19, 2:5] = 0.4, 0.6  # a second class-1 component
    record, labels = prediction_record("x.png", prob)
    assert (record.width, record.height) == (30, 20)
    assert sorted(i.class_id for i in record.instances) == [1, 1, 2]
    for inst in record.instances:
        mask = mask_ops.decode(inst.mask)
        assert (labels[mask] == inst.class_id).all()
        assert len(mask_ops.components(mask, min_area=0)) == 1
        assert 0.0 <= inst.score <= 1.0
    assert sorted(round(i.score, 3) for i in record.instances) == [0.6, 0.7, 0.9]
    record, labels = prediction_record("x.png", prob, min_area=10)  # drops the 9-pixel component
    assert len(record.instances) == 2 and labels[16:19, 2:5].max() == 0


def test_run_folder_checks(trained, tmp_path: Path) -> None:
    assert is_run_dir(trained.run) and not is_run_dir(trained.data)
    with pytest.raises(DataError, match="not a training run folder"):
        load_run(trained.data)
    with pytest.raises(DataError, match="does not exist"):
        load_run(tmp_path / "nope")
    info = load_run(trained.run)
    assert info.checkpoint("last").name == "last.ckpt"
    assert info.pseudo_path() == trained.store.resolve()
    with pytest.raises(DataError, match="checkpoint not found"):
        info.checkpoint(str(tmp_path / "missing.ckpt"))


def test_the_checkpoints_state_dict_is_loaded_not_the_online_weights(trained, tmp_path: Path) -> None:
    """With EMA on, Lightning keeps the averaged weights in ``state_dict`` and the online ones aside."""
    import torch

    ckpt = torch.load(trained.run / "weights" / "best.ckpt", map_location="cpu", weights_only=True)
    ckpt["current_model_state"] = dict(ckpt["state_dict"])
    # an "average" whose fine head (and the stride-2 refiner's residual on it) is all zeros predicts
    # uniform probabilities: proof it was loaded
    zeroed = ("model.fine_head.", "model.refiner.")
    ckpt["state_dict"] = {
        k: torch.zeros_like(v) if k.startswith(zeroed) and v.is_floating_point() else v
        for k, v in ckpt["state_dict"].items()
    }
    torch.save(ckpt, tmp_path / "ema.ckpt")
    import shutil

    run = tmp_path / "run"  # decided on the fine head, whose weights the "average" zeroes
    shutil.copytree(trained.run, run, ignore=shutil.ignore_patterns("cache"))
    (run / "decision.json").write_text('{"source": "fine", "threshold": 0.5}')
    predictor = Predictor(run, which=str(tmp_path / "ema.ckpt"))
    assert predictor.source["weights"] == "ema"
    prob = predictor.probabilities([np.full((20, 30, 3), 128, dtype=np.uint8)])[0]
    np.testing.assert_allclose(prob, 1.0 / prob.shape[0], atol=1e-5)


def test_student_teacher_registration_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from weakseg.teachers import teacher_names\n"
        "assert 'student' in teacher_names()\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_runs_decision_sets_the_threshold_and_the_head(trained, tmp_path: Path) -> None:
    import json
    import shutil

    from weakseg.inference.predictor import load_decision

    run = tmp_path / "run"
    shutil.copytree(trained.run, run, ignore=shutil.ignore_patterns("cache"))
    assert load_decision(run) == load_decision(trained.run)  # training wrote one, read back as is
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (48, 60, 3), dtype=np.uint8)
    counts = {}
    for source, threshold in (("fine", 0.05), ("fine", 0.95), ("binary", 0.5)):
        (run / "decision.json").write_text(json.dumps({"source": source, "threshold": threshold}))
        predictor = Predictor(run)
        assert predictor.threshold == threshold
        prob = predictor.probabilities([image])[0]
        counts[(source, threshold)] = int((predictor.label_map(prob) > 0).sum())
        _, labels = prediction_record("x.png", prob, threshold=predictor.threshold, vote=predictor.vote)
        assert np.array_equal(labels > 0, predictor.label_map(prob) > 0)
    assert counts[("fine", 0.05)] > counts[("fine", 0.95)]
    (run / "decision.json").write_text("{not json")
    with pytest.raises(DataError, match="decision"):
        Predictor(run)
