"""The U-Net baseline (model=unet) goes through training, the feature cache, Predictor and ONNX unchanged."""

from __future__ import annotations

import numpy as np
import onnxruntime  # noqa: F401 - the [dev] extra installs both; a broken install must fail
import segmentation_models_pytorch  # noqa: F401


def test_unet_baseline_trains_predicts_and_exports_like_a_student(trained, tmp_path) -> None:
    """model=unet goes through train, the feature cache, Predictor and ONNX export unchanged."""
    from weakseg.deploy.onnx import OnnxPredictor, export_onnx
    from weakseg.inference.predictor import Predictor
    from weakseg.training.train import TrainConfig, train

    run = tmp_path / "unet"
    config = TrainConfig(model="unet", epochs=1, size=(64, 64), batch_size=4)
    train(trained.data, trained.store, run, config)
    assert "model: unet" in (run / "config.yaml").read_text()
    predictor = Predictor(run)
    images = [np.random.default_rng(0).integers(0, 255, (56, 72, 3), dtype=np.uint8)]
    p_torch = predictor.probabilities(images)[0]
    export_onnx(run, tmp_path / "unet.onnx")
    p_onnx = OnnxPredictor(tmp_path / "unet.onnx").probabilities(images)[0]
    assert p_torch.shape[1:] == (56, 72) and np.allclose(p_torch.sum(0), 1, atol=1e-4)
    assert np.abs(p_torch - p_onnx).max() < 1e-4
