"""The U-Net baseline: smp's U-Net on the student's frozen encoder, behind the student's interface."""

from __future__ import annotations

import pytest
import torch

from weakseg.errors import WeaksegError
from weakseg.student.backbones import lite0_state_dict
from weakseg.student.model import StudentModel, create_segmenter

pytest.importorskip("segmentation_models_pytorch")


def test_unet_has_the_students_interface_and_frozen_imagenet_encoder() -> None:
    torch.manual_seed(0)
    model = create_segmenter("unet", "lite0", 3)
    image = torch.rand(2, 3, 50, 70)  # not a multiple of 32: padded inside, cropped back
    features = model.features(image)
    assert [f.shape[-1] for f in features] == [48, 24, 12, 6, 3]  # strides 2..32 of the padded 64x96
    out = model.decode(features, image)
    assert set(out) == {"fine"} and out["fine"].shape == (2, 4, 50, 70)
    assert torch.equal(model(image)["fine"], out["fine"])
    # The encoder holds the packaged ImageNet weights and never trains (nor moves its BN statistics).
    encoder = model.unet.encoder.model.state_dict()
    full = lite0_state_dict()
    assert all(torch.equal(encoder[k], full[k]) for k in encoder)
    trainable = {id(p) for p in model.trainable_parameters()}
    assert trainable and not trainable & {id(p) for p in model.unet.encoder.parameters()}
    model.train()
    assert not model.unet.encoder.training and model.unet.decoder.training


def test_create_segmenter_builds_the_student_and_rejects_unknown_names() -> None:
    assert isinstance(create_segmenter("student", "lite0", 2, weights=None), StudentModel)
    with pytest.raises(WeaksegError, match="unknown model"):
        create_segmenter("deeplab", "lite0", 2, weights=None)
    with pytest.raises(WeaksegError, match="lite0 only"):
        create_segmenter("unet", "dinov2_s", 2, weights=None)
