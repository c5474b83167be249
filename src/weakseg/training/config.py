"""The training configuration: one dataclass tree, read from YAML and ``key=value`` overrides.

``weakseg train --config run.yaml --set loss.tau=0.8 --set decoder.width=96`` starts from the
defaults, applies the file, then the command line's options, then the overrides (dotted paths into
the nested sections), and checks every key and type. The run folder keeps the resolved result as
``config.yaml``, so a run can be reproduced (or resumed) from that file alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from weakseg.data.preprocess import RESIZE_MODES
from weakseg.data.samples import SampleConfig
from weakseg.errors import DataError, WeaksegError
from weakseg.student.backbones import FREEZE_MODES
from weakseg.student.losses import LossConfig
from weakseg.student.model import DecoderConfig
from weakseg.student.segmenter import segmenter_names
from weakseg.training.feature_cache import FLIPS
from weakseg.training.mean_teacher import MeanTeacherConfig


@dataclass
class TrainConfig:
    model: str = "student"  # or "unet": the smp baseline on the same frozen encoder
    backbone: str = "lite0"
    backbone_weights: str | None = "default"
    backbone_mode: str = "frozen"  # bitfit, last (deepest stage) or all train with it; cache must be off
    size: tuple[int, int] = SampleConfig.size  # (height, width) of the canvas every image is trained on
    resize: str = "letterbox"  # keep the aspect ratio and pad ("stretch": squash to the canvas)
    box_fill_as_boxes: bool = False  # teacher masks that fill their box train only the box terms inside it
    negative_ratio: float | None = 0.5  # defect-free images drawn per defect image each epoch (null: all)
    epochs: int = 12
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-2
    seed: int = 0
    patience: int = 10
    flips: tuple[str, ...] = FLIPS
    feature_cache: bool = True  # frozen-backbone features computed once, memory-mapped from disk
    ema_decay: float | None = None  # e.g. 0.999: evaluate and save an EMA of the student
    monitor: str = "anomaly_miou"  # val metric for best checkpoint / early stopping (or binary_iou)
    val_masks: str = "pseudo"  # model selection on pseudo-masks, or "gt" where val has human masks
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    accelerator: str = "cpu"
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    mean_teacher: MeanTeacherConfig = field(default_factory=MeanTeacherConfig)  # BoxTeacher's EMA teacher

    def __post_init__(self) -> None:
        choices = {
            "model": tuple(segmenter_names()),
            "monitor": ("anomaly_miou", "binary_iou"),
            "val_masks": ("pseudo", "gt"),
            "resize": RESIZE_MODES,
            "backbone_mode": FREEZE_MODES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise WeaksegError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.backbone_mode != "frozen" and self.feature_cache:
            raise WeaksegError(
                f"backbone_mode={self.backbone_mode} trains the backbone, so its features cannot be cached: "
                "add feature_cache=false"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-safe dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "config") -> TrainConfig:
        return _build(cls, values, where)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a type hint, converting what YAML cannot express (tuples, int->float)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except WeaksegError as exc:
                errors.append(str(exc))
        raise WeaksegError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            raise WeaksegError(f"{where}: expected a mapping of {hint.__name__} settings, got {value!r}")
        return _build(hint, value, where)
    if origin in (tuple, Sequence, list) or hint in (tuple, list):
        if isinstance(value, str) or not isinstance(value, Sequence):
            if hint is tuple or (origin is tuple and typing.get_args(hint)[1:] != (Ellipsis,)):
                args = typing.get_args(hint)
                # A square size may be given as one number: size=320.
                if args and len(set(args)) == 1 and isinstance(value, int | float):
                    return tuple(_coerce(value, args[0], where) for _ in args)
            raise WeaksegError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise WeaksegError(f"{where}: expected {len(args)} values, got {list(value)!r}")
            pairs = enumerate(zip(value, args, strict=True))
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in pairs)
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise WeaksegError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise WeaksegError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise WeaksegError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise WeaksegError(f"{where}: expected a string, got {value!r}")
        return value
    raise WeaksegError(f"{where}: unsupported setting type {hint!r}")


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise WeaksegError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(names)}")
    defaults = cls()
    kwargs = {}
    for name in names:
        if name in values:
            kwargs[name] = _coerce(values[name], hints[name], f"{where}.{name}")
        else:
            kwargs[name] = getattr(defaults, name)
    return cls(**kwargs)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["loss.tau=0.8", "size=[320,320]"]`` -> nested dict; values are parsed as YAML."""
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise WeaksegError(f"override {item!r}: expected key=value, e.g. loss.tau=0.8")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise WeaksegError(f"override {item!r}: value is not valid YAML ({exc})") from None
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise WeaksegError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = value
    return nested


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


#: Settings added after runs were first written, with the value those runs were trained with. A run's
#: ``config.yaml`` always holds every setting of its day, so a missing one means an older run; reading
#: it with today's default would rebuild another network (``output_stride``) or another canvas.
RUN_FILE_LEGACY: dict[str, Any] = {
    "resize": "stretch",
    "negative_ratio": None,  # every image, every epoch
    "decoder": {"output_stride": 4, "upsample_kernel": 3},
    "loss": {"fine_dice_weight": 0.0},
}


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
    *,
    run_file: bool = False,
) -> TrainConfig:
    """Defaults <- the YAML file at ``path`` <- ``flags`` (options given on the command line) <-
    ``key=value`` ``overrides``; every key and type is checked.

    ``run_file``: ``path`` is a run's own ``config.yaml``; settings it lacks take their
    :data:`RUN_FILE_LEGACY` value instead of today's default.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise DataError(path, "does not exist") from None
        except yaml.YAMLError as exc:
            raise DataError(path, f"is not valid YAML ({exc})") from None
        if not isinstance(loaded, Mapping):
            raise DataError(path, "must hold a mapping of settings at the top level")
        values = dict(loaded)
        if run_file:
            values = _merge(RUN_FILE_LEGACY, values)
    values = _merge(values, flags or {})
    values = _merge(values, parse_overrides(overrides))
    try:
        return TrainConfig.from_dict(values, "config")
    except WeaksegError as exc:
        if path is None:
            raise
        raise DataError(path, str(exc)) from None
