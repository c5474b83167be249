"""Running teachers at scale: sharded, resumable, with a store that never tears."""

from weakseg.pseudolabel.runner import pseudo_label
from weakseg.pseudolabel.store import PseudoStore

__all__ = ["PseudoStore", "pseudo_label"]
