"""BSDS-style ground truth (``groundTruth/*.mat`` with a ``Segmentation`` label map), as CrackForest ships it.

A ``Segmentation`` map numbers *segments*, not classes, so a value map says which segment values are
defects. The default is the CrackForest convention, ``{2: "crack", 4: "crack"}``: value 1 is
pavement, 2 the main crack strokes, 4 separate thin strokes, and 3 is pavement *enclosed by* cracks
(alligator-cracking polygons) - NOT crack. Converters that take ``> 1`` fill those regions; ``== 2``
drops the value-4 strokes. Pass ``ReadOptions.value_map`` for any other BSDS-style dataset.

Images without a ``.mat`` are unlabelled (``annotated=False``), never negatives: CrackForest's 37
unlabelled photos contain cracks too.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
from scipy.io import loadmat

from weakseg.annotations.images import image_size, iter_images, relative_name
from weakseg.annotations.readers import ReadOptions, register_reader
from weakseg.annotations.readers.mask_folder import class_map_from_values, instances_from_labels
from weakseg.annotations.schema import AnnotationSet, ImageRecord
from weakseg.errors import DataError, IssueLog

#: CrackForest: 2 = crack, 4 = thin separate strokes; 1 = pavement, 3 = pavement enclosed by cracks.
DEFAULT_VALUE_MAP: dict[int, str] = {2: "crack", 4: "crack"}
GROUND_TRUTH_DIR = "groundTruth"
IMAGE_DIR_NAMES = ("image", "images")


def _detect(path: Path) -> bool:
    gt = path / GROUND_TRUTH_DIR
    return path.is_dir() and gt.is_dir() and any(gt.rglob("*.mat"))


def _image_dir(data: Path) -> Path:
    for name in IMAGE_DIR_NAMES:
        if (data / name).is_dir():
            return data / name
    raise DataError(data, f"no image/ or images/ folder beside {GROUND_TRUTH_DIR}/")


def _struct_items(ground_truth: np.ndarray) -> list:
    """The annotators' structs, whether saved as a struct array (CrackForest) or a cell array (BSDS500)."""
    items = []
    for entry in np.asarray(ground_truth).flat:
        if isinstance(entry, np.ndarray) and entry.dtype.names:
            items.extend(entry.flat)
        else:
            items.append(entry)
    return items


def _unwrap(value: object) -> object:
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.flat[0]
    return value


def read_segmentations(mat_path: Path) -> list[np.ndarray]:
    """Every annotator's ``Segmentation`` map in a BSDS ``.mat`` file (at least one)."""
    try:
        content = loadmat(mat_path)
    except Exception as exc:  # scipy's parser fails on junk with anything from IndexError to zlib.error
        raise DataError(mat_path, f"cannot read the .mat file: {exc}") from None
    if "groundTruth" not in content:
        raise DataError(mat_path, "holds no 'groundTruth' variable (expected a BSDS ground-truth struct)")
    segs = []
    for item in _struct_items(content["groundTruth"]):
        names = getattr(getattr(item, "dtype", None), "names", None) or ()
        if "Segmentation" not in names:
            raise DataError(mat_path, "'groundTruth' has no 'Segmentation' field")
        seg = np.asarray(_unwrap(item["Segmentation"]))
        if seg.ndim != 2 or not np.issubdtype(seg.dtype, np.number):
            raise DataError(
                mat_path, f"'Segmentation' is not a 2-D label map (shape {seg.shape}, {seg.dtype})"
            )
        segs.append(seg.astype(np.int64, copy=False))
    if not segs:
        raise DataError(mat_path, "'groundTruth' is empty")
    return segs


def _index_mats(gt_dir: Path) -> dict[str, Path]:
    """Relative path without suffix -> ``.mat``: ``groundTruth/train/x.mat`` meets ``images/train/x.jpg``."""
    return {relative_name(p.with_suffix(""), gt_dir): p for p in sorted(gt_dir.rglob("*.mat")) if p.is_file()}


@register_reader(
    "bsds",
    detect=_detect,
    help="BSDS-style groundTruth/*.mat label maps beside image/ (CrackForest: values 2 and 4 are crack)",
)
def read_bsds(path: Path, options: ReadOptions, issues: IssueLog) -> AnnotationSet:
    """Read images and their ``.mat`` label maps; segment values become classes through the value map."""
    path = Path(path)
    gt_dir = path / GROUND_TRUTH_DIR
    if not gt_dir.is_dir():
        raise DataError(path, f"no {GROUND_TRUTH_DIR}/ folder")
    images_root = _image_dir(path)
    class_map, values = class_map_from_values(options.value_map or DEFAULT_VALUE_MAP)
    mats = _index_mats(gt_dir)
    multi: list[Path] = []
    records = []
    for image in iter_images(images_root):
        file_name = relative_name(image, images_root)
        mat = mats.pop(PurePosixPath(file_name).with_suffix("").as_posix(), None)
        record = _record(image, file_name, mat, values, options, issues, multi)
        if record is not None:
            records.append(record)
    if multi:
        issues.warning(
            multi[0], f"{len(multi)} .mat file(s) hold several annotators' segmentations; using the first"
        )
    for mat in mats.values():
        issues.warning(mat, f"ground truth has no image under {images_root}")
    return AnnotationSet(images_root, class_map, records, "bsds")


def _record(
    image: Path,
    file_name: str,
    mat: Path | None,
    values: dict[int, int],
    options: ReadOptions,
    issues: IssueLog,
    multi: list[Path],
) -> ImageRecord | None:
    try:
        width, height = image_size(image)
    except DataError as exc:
        issues.add(exc)
        return None
    record = ImageRecord(file_name, width, height, annotated=False)
    if mat is None:
        return record
    record.source = str(mat)
    try:
        segs = read_segmentations(mat)
    except DataError as exc:
        issues.add(exc)
        return record
    if len(segs) > 1:
        multi.append(mat)
    seg = segs[0]
    if seg.shape != (height, width):
        mh, mw = seg.shape
        issues.error(mat, f"mask is {mw}x{mh} but its image {image} is {width}x{height}")
        return record
    record.instances = instances_from_labels(seg, values, options.min_area)
    record.annotated = True
    return record
