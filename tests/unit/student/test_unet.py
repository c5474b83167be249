"""The U-Net baseline: smp's U-Net on the student's frozen encoder, behind the student's interface."""

from __future__ import annotations

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

from weakseg.errors import WeaksegError
from weakseg.student.backbones import lite0_state_dict
from weakseg.student.model import StudentModel
from weakseg.student.segmenter import create_segmenter


def test_unet_has_the_students_interface_and_frozen_imagenet_encoder() -> None:
    torch.manual_seed(0)
    model = create_segmenter("unet", "lite0", 3)
    image = torch.rand(2, 3, 50, 70)  # not a multiple of 32: padded inside, cropped back
    features = model.features(image)
    assert [f.shape[-1] for f in features] == [48, 24, 12, 6, 3]  # strides 2..32 of the padded 64x96
    out = model.decode(features, image)
    assert isinstance(model.unet, smp.Unet)
    assert set(out) == {"fine"} and out["fine"].shape == (2, 4, 50, 70)
    # Padded at the bottom and right, cropped back from the top-left: the same image padded by hand
    # (as the model does) to 64x96 gives the same logits there (eval: smp's decoder has BatchNorm).
    model.eval()
    with torch.no_grad():
        small, big = model(image)["fine"], model(F.pad(image, (0, 26, 0, 14), mode="reflect"))["fine"]
    assert torch.allclose(big[..., :50, :70], small, atol=1e-5)
    # Gradients reach the decoder and head, never the frozen encoder.
    model.train()
    model(image)["fine"].mean().backward()
    assert all(p.grad is None for p in model.unet.encoder.parameters())
    assert all(p.grad is not None for p in model.trainable_parameters())
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
