"""What ``weakseg benchmark`` compares: the rows of the table and the training runs behind them.

Two groups are scored on the same held-out test images:

* **boxes given** (refine mode): every teacher's masks and refined masks inside the same boxes,
  derived from the human masks: the student with the box-aware threshold and flip TTA (``weakseg
  refine``'s default), the same with the old fixed 0.5 threshold and no TTA (what box-aware refine
  gains), fused with the teacher, the supervised student, and the refine -> retrain rounds;
* **no boxes** (detect mode): students that see only the image: the full student, with BoxTeacher's
  mean teacher, and the ablations of METHODS.md 1.5 (no self-correction, no binary head, no detail
  branch), all trained on the best teacher's masks; the U-Net a user would otherwise pick, on the
  frozen encoder and with the encoder fine-tuned, trained on the same masks; the students of later
  rounds; and the student and the fine-tuned U-Net trained on the human masks (the ceilings).

Rounds: round 1 is the student trained on the teacher's masks refining every box of the whole data
set (training needs masks for the train and val images too) into a store; round ``k`` >= 2 is a
student trained on round ``k - 1``'s store, whose refined masks are round ``k``'s store. The rows
"refined: round k" score a store on the test images; "student (round k)" is the box-free view.

Rows are named by key (``--rows``); a row pulls in the rows it needs (a refine row its run, a round's
student the previous round's store).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from weakseg.errors import WeaksegError

GROUP_BOXES = "boxes given"
GROUP_FREE = "no boxes"

#: Settings every benchmark student starts from (then the user's ``--set``); the rest are ``weakseg
#: train``'s defaults, model selection and decision on val anomaly mIoU included. Selecting on binary IoU
#: (the benchmark's choice until 2026-12) cost the Magnetic Tile ceiling 10 points of anomaly mIoU
#: (0.338 vs 0.436: the per-region class vote is not chosen) for no gain in binary IoU (0.545 vs 0.563).
#: The self-correction warm-up is shorter than the paper's, since a CPU benchmark trains a few epochs.
DEFAULT_SETTINGS = ("loss.self_correction_warmup_epochs=3",)

#: Default number of refine -> retrain rounds (1: no retraining, the rows of a single round). Rounds 2
#: and 3 lost 2.8 and 9.4 binary-IoU points on CrackForest (docs/benchmarks.md: each round's masks grow
#: wider) and cost a training each, so they run only when asked for (``--rounds 3``).
DEFAULT_ROUNDS = 1

#: What a user would otherwise train: smp's U-Net with its encoder fine-tuned (no feature cache then),
#: plain class-weighted cross-entropy.
UNET_FINETUNED = ("model=unet", "backbone_mode=all", "feature_cache=false", "loss.tau=null")


@dataclass(frozen=True)
class RunSpec:
    """One training run: on the teacher's masks, the human masks (``supervised``) or a round's store."""

    key: str  # folder name under runs/
    label: str  # row name in the table
    overrides: tuple[str, ...] = ()
    supervised: bool = False
    cache: str = "student"  # runs sharing backbone features share a feature cache
    masks: str | None = None  # key of the refine row whose (whole data set) store it trains on

    @property
    def needs(self) -> tuple[str, ...]:
        return (self.masks,) if self.masks else ()


#: The detect-mode rows of every benchmark, in table order (round students go before the ceilings).
RUNS: tuple[RunSpec, ...] = (
    RunSpec("student", "student (full)"),
    RunSpec("mean-teacher", "student + mean teacher", ("mean_teacher.enabled=true",)),
    RunSpec("no-self-correction", "student - self-correction", ("loss.tau=null",)),
    RunSpec("no-binary-head", "student - binary head", ("decoder.use_binary=false",)),
    RunSpec(
        "no-detail-branch", "student - detail branch", ("decoder.use_detail=false", "decoder.output_stride=4")
    ),
    # smp's U-Net on the frozen encoder the student uses (features cached like the student's).
    RunSpec("unet", "U-Net (smp, same encoder)", ("model=unet", "loss.tau=null"), cache="unet"),
    RunSpec("unet-finetuned", "U-Net (smp, encoder fine-tuned)", UNET_FINETUNED, cache="unet"),
    # Ceilings select on the human masks of the val images (val_masks=gt).
    RunSpec("supervised", "student on human masks (ceiling)", ("val_masks=gt",), supervised=True),
    RunSpec(
        "unet-finetuned-supervised",
        "U-Net (smp, encoder fine-tuned) on human masks",
        (*UNET_FINETUNED, "val_masks=gt"),
        supervised=True,
        cache="unet",
    ),
)


@dataclass(frozen=True)
class RefineSpec:
    """A refine-mode row: a trained run labels boxes (optionally fused with the teacher).

    ``whole_dataset``: the run labels every box of the data set (a round's store, which the next
    round trains on); the row scores its test images. Otherwise only the test boxes are labelled.
    """

    key: str
    label: str
    run: str
    fuse_with_teacher: bool = False
    threshold: float | str = "box"  # weakseg refine's default: per-box threshold
    tta: bool = True
    whole_dataset: bool = False

    @property
    def needs(self) -> tuple[str, ...]:
        return (self.run,)


REFINES: tuple[RefineSpec, ...] = (
    RefineSpec("refined-student", "refined: student", "student"),
    # The refine of before the box-aware default: what the per-box threshold and the TTA gain.
    RefineSpec(
        "refined-student-fixed",
        "refined: student (threshold 0.5, no TTA)",
        "student",
        threshold=0.5,
        tta=False,
    ),
    RefineSpec("refined-student-fused", "refined: student + teacher (quality fusion)", "student", True),
    RefineSpec("refined-supervised", "refined: supervised student (ceiling)", "supervised"),
)


#: Table label of every base run and refine row, by key: code refers to rows by key, never by label.
LABELS = {spec.key: spec.label for spec in (*RUNS, *REFINES)}


def round_specs(rounds: int) -> tuple[tuple[RunSpec, ...], tuple[RefineSpec, ...]]:
    """The students and stores of rounds 2..``rounds`` and 1..``rounds`` (none when ``rounds`` is 1:
    round 1's refined masks are then the "refined: student" row)."""
    if rounds < 2:
        return (), ()
    runs = tuple(
        RunSpec(f"student-round{k}", f"student (round {k})", masks=f"refined-round{k - 1}")
        for k in range(2, rounds + 1)
    )
    refines = tuple(
        RefineSpec(
            f"refined-round{k}",
            f"refined: round {k}",
            "student" if k == 1 else f"student-round{k}",
            whole_dataset=True,
        )
        for k in range(1, rounds + 1)
    )
    return runs, refines


@dataclass(frozen=True)
class Plan:
    """The runs and refine rows one benchmark computes, each in table order."""

    runs: tuple[RunSpec, ...]
    refines: tuple[RefineSpec, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in (*self.refines, *self.runs))

    @property
    def labels(self) -> dict[str, str]:
        return {s.key: s.label for s in (*self.runs, *self.refines)}

    def run(self, key: str) -> RunSpec:
        return next(s for s in self.runs if s.key == key)

    def refine(self, key: str) -> RefineSpec:
        return next(s for s in self.refines if s.key == key)


def make_plan(rounds: int = DEFAULT_ROUNDS, rows: Sequence[str] | None = None) -> Plan:
    """Every row for ``rounds`` rounds, or only ``rows`` and the rows they need (None: all)."""
    if rounds < 1:
        raise WeaksegError(f"--rounds must be at least 1, got {rounds}")
    round_runs, round_refines = round_specs(rounds)
    runs = (*(s for s in RUNS if not s.supervised), *round_runs, *(s for s in RUNS if s.supervised))
    refines = (*REFINES, *round_refines)
    specs: dict[str, RunSpec | RefineSpec] = {s.key: s for s in (*refines, *runs)}
    if rows is None:
        return Plan(runs, refines)
    unknown = [k for k in rows if k not in specs]
    if unknown:
        raise WeaksegError(
            f"--rows: unknown row(s) {', '.join(unknown)}; known (with --rounds {rounds}): {', '.join(specs)}"
        )
    if not rows:
        raise WeaksegError(f"--rows: name at least one row; known: {', '.join(specs)}")
    wanted: set[str] = set()
    stack = list(rows)
    while stack:
        key = stack.pop()
        if key not in wanted:
            wanted.add(key)
            stack.extend(specs[key].needs)
    return Plan(tuple(s for s in runs if s.key in wanted), tuple(s for s in refines if s.key in wanted))


def parse_seeds(text: str | None, default: int) -> tuple[int, ...]:
    """``"0,1,2"`` -> (0, 1, 2); None or blank -> (``default``,), the one seed of a plain benchmark."""
    if text is None or not text.strip():
        return (default,)
    seeds: list[int] = []
    for item in (t.strip() for t in text.split(",")):
        try:
            seed = int(item)
        except ValueError:
            raise WeaksegError(f"--seeds: {item!r} is not an integer (e.g. --seeds 0,1,2)") from None
        if seed in seeds:
            raise WeaksegError(f"--seeds: {seed} is given twice")
        seeds.append(seed)
    return tuple(seeds)


def parse_rows(text: str | None) -> tuple[str, ...] | None:
    """``"student,unet"`` -> ("student", "unet"); None or blank -> None (every row)."""
    if text is None or not text.strip():
        return None
    return tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))


@dataclass
class BenchmarkSettings:
    """Everything that decides the numbers; a resumed benchmark must be given the same.

    ``seed`` makes the split (one test set for every row); ``seeds`` are the training seeds, each
    training row being trained once per seed on that same split, so their spread is training noise
    alone. ``rows`` is the resolved row list (dependencies included), in table order.
    """

    data: str
    teachers: tuple[str, ...]
    backbone: str = "lite0"
    seed: int = 0
    epochs: int = 10
    size: int = 256
    settings: tuple[str, ...] = field(default_factory=lambda: DEFAULT_SETTINGS)
    seeds: tuple[int, ...] = (0,)
    rounds: int = DEFAULT_ROUNDS
    rows: tuple[str, ...] = ()
    supervision: tuple[str, ...] = ("boxes",)
    tag_rounds: int | None = None  # self-training rounds of the tags route (None: not run)
    classifier_settings: tuple[str, ...] = ()  # KEY=VALUE settings of the tags route's classifier

    def train_args(self, seed: int | None = None) -> list[str]:
        """``key=value`` overrides shared by every run trained with ``seed`` (default: the split's)."""
        return [
            f"backbone={self.backbone}",
            f"seed={self.seed if seed is None else seed}",
            f"epochs={self.epochs}",
            f"size={self.size}",
            *self.settings,
        ]
