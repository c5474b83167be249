"""What ``weakseg benchmark`` compares: the rows of the table and the training runs behind them.

Two groups are scored on the same held-out test images:

* **boxes given** (refine mode): every teacher's masks and the student's refined masks inside the
  same boxes, derived from the human masks;
* **no boxes** (detect mode): students that see only the image: the full student and the ablations
  of METHODS.md 1.5 (no self-correction, no binary head, no detail branch), all trained on the best
  teacher's masks; the U-Net a user would otherwise pick, trained on the same masks; and the student
  trained on the human masks (the ceiling).
"""

from __future__ import annotations

from dataclasses import dataclass, field

GROUP_BOXES = "boxes given"
GROUP_FREE = "no boxes"

#: Settings every benchmark student starts from (then the user's ``--set``): select on val binary IoU
#: (the table's headline), a higher learning rate and a shorter self-correction warm-up than the
#: paper's 200-epoch schedule, since a CPU benchmark trains for a few epochs only.
DEFAULT_SETTINGS = ("monitor=binary_iou", "lr=2e-3", "loss.self_correction_warmup_epochs=3")


@dataclass(frozen=True)
class RunSpec:
    """One training run: trained on the teacher's masks, or on the human masks (``supervised``)."""

    key: str  # folder name under runs/
    label: str  # row name in the table
    overrides: tuple[str, ...] = ()
    supervised: bool = False
    cache: str = "student"  # runs sharing backbone features share a feature cache


#: The detect-mode rows, in table order.
RUNS: tuple[RunSpec, ...] = (
    RunSpec("student", "student (full)"),
    RunSpec("no-self-correction", "student - self-correction", ("loss.tau=null",)),
    RunSpec("no-binary-head", "student - binary head", ("decoder.use_binary=false",)),
    RunSpec("no-detail-branch", "student - detail branch", ("decoder.use_detail=false",)),
    # What a user would otherwise train: smp's U-Net, plain class-weighted cross-entropy.
    RunSpec("unet", "U-Net (smp, same encoder)", ("model=unet", "loss.tau=null"), cache="unet"),
    RunSpec("supervised", "student on human masks (ceiling)", supervised=True),
)


@dataclass(frozen=True)
class RefineSpec:
    """A refine-mode row: a trained run labels the test boxes (optionally fused with the teacher)."""

    key: str
    label: str
    run: str
    fuse_with_teacher: bool = False


REFINES: tuple[RefineSpec, ...] = (
    RefineSpec("refined-student", "refined: student", "student"),
    RefineSpec("refined-student-fused", "refined: student + teacher (quality fusion)", "student", True),
    RefineSpec("refined-supervised", "refined: supervised student (ceiling)", "supervised"),
)


#: Table label of every run and refine row, by key: code refers to rows by key, never by label.
LABELS = {spec.key: spec.label for spec in (*RUNS, *REFINES)}


@dataclass
class BenchmarkSettings:
    """Everything that decides the numbers; a resumed benchmark must be given the same."""

    data: str
    teachers: tuple[str, ...]
    backbone: str = "lite0"
    seed: int = 0
    epochs: int = 10
    size: int = 256
    settings: tuple[str, ...] = field(default_factory=lambda: DEFAULT_SETTINGS)

    def train_args(self) -> list[str]:
        """``key=value`` overrides shared by every run."""
        return [
            f"backbone={self.backbone}",
            f"seed={self.seed}",
            f"epochs={self.epochs}",
            f"size={self.size}",
            *self.settings,
        ]
