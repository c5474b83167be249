"""Tag teachers: pseudo-masks from image-level tags, for ``weakseg pseudo-label --teacher <name>``.

The CAM family explains a trained tag classifier (``classifier=RUN``, from ``weakseg
train-classifier``) per tagged class; the formulas are in :mod:`weakseg.teachers.cam`:

* ``cam``: CAM on the classifier's stride-16 map (exact for its GAP + linear head);
* ``gradcam``, ``gradcam++``: on the same map;
* ``layercam``: LayerCAM on ``layers`` (default the stride-4 and stride-8 backbone maps and the
  stride-16 map), shallow ones tanh-rescaled, fused by the element-wise maximum;
* ``region-cam``: the region-aware CAM: filter-guided backpropagation on the high-resolution layers
  (``percentile``; 0 switches the filter off) weighted by the coarse Grad-CAM region raised to
  ``region_power`` (0 switches the weighting off).

Every map is brought back to the original image, scaled by its maximum and cut in three states:
defect above ``fg_threshold``, background below ``bg_threshold``, ignored in between (defaults
0.7 / 0.3 for the deep-layer maps, 0.2 / 0.05 for ``region-cam``, whose fine maps are also
tanh-rescaled with ``gamma`` 4 and filtered at the 50th energy percentile: all chosen on Magnetic
Tile's val split). The quality is
the map's contrast between its defect and the rest times the classifier's probability of the tag.

``student-tags`` is a trained student re-labelling images from their tags (the self-training rounds
of METHODS.md 4.4): defect where the student's foreground probability exceeds ``fg_threshold``
(0.9), background below ``bg_threshold`` (0.1); each defect pixel takes the tagged class the student
finds most likely there, so an untagged class never appears and a defect-free image stays background.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from weakseg.inference.teacher import checkpoint_identity
from weakseg.teachers.base import TagMask, TagTeacher, register_teacher
from weakseg.teachers.three_state import map_quality, three_state

#: Layer names a CAM teacher can use: the backbone's maps by stride, and the classifier's CAM map.
LAYER_NAMES = ("s4", "s8", "s16", "s32", "cam")


class CamTeacher(TagTeacher):
    """Shared machinery: load the classifier once, take the gradients a variant asks for, cut maps."""

    needs_gradients: ClassVar[bool] = True
    #: Default (fg, bg) thresholds, chosen on Magnetic Tile's val split (docs/benchmarks.md): the
    #: deep-layer maps are broad, so only their top stays defect; the region-aware map is peaked.
    default_thresholds: ClassVar[tuple[float, float]] = (0.7, 0.3)

    def __init__(
        self,
        classifier: str,
        which: str = "best",
        fg_threshold: float | None = None,
        bg_threshold: float | None = None,
        **options: Any,
    ) -> None:
        fg_threshold = self.default_thresholds[0] if fg_threshold is None else fg_threshold
        bg_threshold = self.default_thresholds[1] if bg_threshold is None else bg_threshold
        three_state(np.zeros((1, 1)), float(fg_threshold), float(bg_threshold))  # validates the pair
        path = Path(classifier)
        checkpoint = path / "weights" / f"{which}.ckpt"
        if not checkpoint.is_file():
            raise ValueError(f"classifier run {classifier}: {checkpoint} does not exist")
        self.classifier, self.which = str(path.resolve()), which
        self.fg_threshold, self.bg_threshold = float(fg_threshold), float(bg_threshold)
        self.options = options
        self._run: Any = None
        super().__init__(
            classifier=self.classifier,
            which=which,
            checkpoint=checkpoint_identity(checkpoint),
            fg_threshold=self.fg_threshold,
            bg_threshold=self.bg_threshold,
            **options,
        )

    def __getstate__(self) -> dict[str, Any]:  # worker processes load their own model
        return {**self.__dict__, "_run": None}

    def _get_run(self) -> Any:
        if self._run is None:
            from weakseg.training.classifier import load_classifier

            self._run = load_classifier(self.classifier, self.which)
        return self._run

    def layers(self) -> tuple[str, ...]:
        return ("cam",)

    def heat(
        self, maps: dict[str, Any], grads: dict[str, Any], class_index: int, size: tuple[int, int]
    ) -> Any:
        """The variant's map ``[h, w]`` for one class from each layer's activation and gradient
        (``[K, h, w]``, batch dimension dropped); ``size`` is the padded input's, for fusing layers."""
        raise NotImplementedError

    def heat_maps(
        self, image: np.ndarray, class_ids: tuple[int, ...]
    ) -> tuple[dict[int, np.ndarray], np.ndarray]:
        """Per tagged class, its map on the original image scaled to ``[0, 1]``; and every class's
        probability from the classifier."""
        import torch

        from weakseg.data.preprocess import canvas_to_original, geometry, image_to_canvas
        from weakseg.teachers.cam import normalise, resize_map

        run = self._get_run()
        model = run.model
        geom = geometry(image.shape[:2], tuple(run.config.size), run.config.resize)
        x = image_to_canvas(image, geom)[None]
        canvas = tuple(x.shape[-2:])
        with torch.enable_grad():
            x.requires_grad_(True)
            out = model.forward_maps(x)
            named = {f"s{s}": f for s, f in zip(model.backbone.strides, out["features"], strict=True)}
            named["cam"] = out["activation"]
            wanted = self.layers()
            unknown = [n for n in wanted if n not in named]
            if unknown:
                raise ValueError(f"unknown layer(s) {unknown}; this classifier has {sorted(named)}")
            probs = torch.sigmoid(out["logits"][0]).detach().numpy()
            tensors = [named[n] for n in wanted]
            maps = {n: t[0].detach() for n, t in zip(wanted, tensors, strict=True)}
            padded = tuple(model.prepare(x.detach()).shape[-2:])
            heats: dict[int, np.ndarray] = {}
            for class_id in class_ids:
                index = int(class_id) - 1
                grads = (
                    torch.autograd.grad(out["logits"][0, index], tensors, retain_graph=True)
                    if self.needs_gradients
                    else [torch.zeros_like(t) for t in tensors]
                )
                gmap = {n: g[0].detach() for n, g in zip(wanted, grads, strict=True)}
                heat = self.heat(maps, gmap, index, padded)
                heat = resize_map(heat, padded)[: canvas[0], : canvas[1]]
                heat = canvas_to_original(heat[None], geom)[0].clamp_min(0)
                heats[int(class_id)] = normalise(heat).numpy()
        return heats, probs

    def label_tags(self, image: np.ndarray, class_ids: tuple[int, ...]) -> list[TagMask]:
        heats, probs = self.heat_maps(image, tuple(class_ids))
        out = []
        for class_id, heat in heats.items():
            defect, ignore = three_state(heat, self.fg_threshold, self.bg_threshold)
            p = float(probs[class_id - 1])
            out.append(TagMask(class_id, defect, ignore, map_quality(heat, defect, p), p))
        return out


@register_teacher("cam", help="CAM of a tag classifier (classifier=RUN): tags, not boxes")
class CamPlain(CamTeacher):
    needs_gradients = False

    def heat(self, maps: dict, grads: dict, class_index: int, size: tuple[int, int]) -> Any:
        from weakseg.teachers.cam import class_activation_map

        return class_activation_map(maps["cam"], self._get_run().model.fc.weight.detach(), class_index)


@register_teacher("gradcam", help="Grad-CAM of a tag classifier (classifier=RUN)")
class GradCamTeacher(CamTeacher):
    def heat(self, maps: dict, grads: dict, class_index: int, size: tuple[int, int]) -> Any:
        from weakseg.teachers.cam import grad_cam

        return grad_cam(maps["cam"], grads["cam"])


@register_teacher("gradcam++", help="Grad-CAM++ of a tag classifier (classifier=RUN)")
class GradCamPlusPlusTeacher(CamTeacher):
    def heat(self, maps: dict, grads: dict, class_index: int, size: tuple[int, int]) -> Any:
        from weakseg.teachers.cam import grad_cam_pp

        return grad_cam_pp(maps["cam"], grads["cam"])


def _layer_list(value: Any) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",")) if isinstance(value, str) else tuple(value)
    bad = [n for n in names if n not in LAYER_NAMES]
    if bad or not names:
        raise ValueError(f"layers must be a comma-separated list of {', '.join(LAYER_NAMES)}, got {value!r}")
    return names


@register_teacher(
    "layercam", help="LayerCAM over shallow and deep layers of a tag classifier (classifier=RUN)"
)
class LayerCamTeacher(CamTeacher):
    def __init__(self, classifier: str, layers: Any = "s4,s8,cam", **kwargs: Any) -> None:
        super().__init__(classifier, layers=",".join(_layer_list(layers)), **kwargs)

    def layers(self) -> tuple[str, ...]:
        return _layer_list(self.options["layers"])

    def heat(self, maps: dict, grads: dict, class_index: int, size: tuple[int, int]) -> Any:
        import torch

        from weakseg.teachers.cam import layer_cam, resize_map, tanh_rescale

        fused = None
        for name in self.layers():
            m = layer_cam(maps[name], grads[name])
            if name in ("s4", "s8"):  # shallow: LayerCAM's tanh rescaling
                m = tanh_rescale(m)
            else:
                peak = m.max()
                m = m / peak if float(peak) > 0 else m
            m = resize_map(m, size)
            fused = m if fused is None else torch.maximum(fused, m)
        return fused


@register_teacher(
    "region-cam",
    help="region-aware CAM with filter-guided backprop (classifier=RUN): fine gradients inside "
    "the Grad-CAM region",
)
class RegionCamTeacher(CamTeacher):
    default_thresholds = (0.2, 0.05)

    def __init__(
        self,
        classifier: str,
        layers: Any = "s4,s8",
        percentile: float = 50.0,
        smooth_sigma: float = 1.0,
        region_power: float = 1.0,
        gamma: float = 4.0,
        **kwargs: Any,
    ) -> None:
        if not 0.0 <= float(percentile) < 100.0:
            raise ValueError(f"percentile must be in [0, 100), got {percentile}")
        if float(region_power) < 0:
            raise ValueError(f"region_power must be >= 0, got {region_power}")
        super().__init__(
            classifier,
            layers=",".join(_layer_list(layers)),
            percentile=float(percentile),
            smooth_sigma=float(smooth_sigma),
            region_power=float(region_power),
            gamma=float(gamma),
            **kwargs,
        )

    def layers(self) -> tuple[str, ...]:
        return (*_layer_list(self.options["layers"]), "cam")

    def heat(self, maps: dict, grads: dict, class_index: int, size: tuple[int, int]) -> Any:
        from weakseg.teachers.cam import fgbp_map, grad_cam, region_aware, resize_map

        o = self.options
        fine = [
            resize_map(fgbp_map(maps[n], grads[n], o["percentile"], o["smooth_sigma"]), size)
            for n in _layer_list(o["layers"])
        ]
        region = resize_map(grad_cam(maps["cam"], grads["cam"]), size)
        return region_aware(region, fine, o["region_power"], o["gamma"])


@register_teacher("student-tags", help="a trained student (run=RUN) re-labelling images from their tags")
class StudentTagTeacher(TagTeacher):
    def __init__(
        self,
        run: str,
        which: str = "best",
        fg_threshold: float = 0.9,
        bg_threshold: float = 0.1,
        tta: bool = True,
    ) -> None:
        from weakseg.inference.teacher import StudentTeacher

        three_state(np.zeros((1, 1)), float(fg_threshold), float(bg_threshold))  # validates the pair
        self.student = StudentTeacher(run, which=which, tta=tta)
        self.fg_threshold, self.bg_threshold = float(fg_threshold), float(bg_threshold)
        super().__init__(
            student=self.student.config(), fg_threshold=self.fg_threshold, bg_threshold=self.bg_threshold
        )

    def label_tags(self, image: np.ndarray, class_ids: tuple[int, ...]) -> list[TagMask]:
        if not class_ids:
            return []
        prob = self.student.probabilities(image)
        foreground = 1.0 - prob[0]
        tagged = [int(c) for c in class_ids]
        winner = np.asarray(tagged)[np.argmax(prob[tagged], axis=0)]
        defect, ignore = three_state(foreground, self.fg_threshold, self.bg_threshold)
        out = []
        for class_id in tagged:
            mine = defect & (winner == class_id)
            confidence = float(foreground[mine].mean()) if mine.any() else 0.0
            quality = map_quality(foreground, mine, 1.0)
            # the undecided pixels belong to every tagged class: with one tag (the usual case) all go to it
            out.append(TagMask(class_id, mine, ignore & ~defect, quality, confidence))
        return out
