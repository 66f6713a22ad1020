"""The run directory: the one module that knows its file names (DESIGN section 1).

    RUN_DIR/
      recipe.yaml            the resolved recipe (a rerun with another recipe is refused)
      split.json             sample ids of train / val / test, the held-out user, the protocol
      metrics.csv            one row per epoch (METRICS_COLUMNS)
      warnings.txt           e.g. test classes that training never saw (absent when none)
      tensorboard/           TensorBoard event files
      last.pt, best.pt       fpar checkpoints (`fpar.models.load_model` reads them alone); best by
                             validation accuracy of the last stage, last = the latest epoch
      stages/<stage>/best.pt, stages/<stage>/last.pt    the same per stage (`init_from` names them)
      state.pt               trainer state for `--resume` (weights, optimizer, scheduler, stage, epoch;
                             RNG draws are a function of seed, stage and epoch, so need no saving)
      eval/<checkpoint>-<split>/   what `fpar eval` writes: metrics.json, per_class.csv,
                             confusion.json/.csv/.png, scores.csv, and for MS models motion.png
    A folder of several runs (`data.test_user=all`: DIR/S1 ... DIR/S4) has `runs.json` naming them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RECIPE_NAME = "recipe.yaml"
SPLIT_NAME = "split.json"
METRICS_NAME = "metrics.csv"
WARNINGS_NAME = "warnings.txt"
TENSORBOARD_DIR = "tensorboard"
STATE_NAME = "state.pt"
STAGES_DIR = "stages"
EVAL_DIR = "eval"
GROUP_NAME = "runs.json"
CHECKPOINTS = ("best", "last")

# metrics.csv: train loss apart per term (loss_cls, loss_ms; loss = loss_cls + alpha * loss_ms)
METRICS_COLUMNS = ("stage", "epoch", "train_loss", "train_loss_cls", "train_loss_ms", "train_acc",
                   "val_loss", "val_acc", "lr", "seconds")


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def recipe(self) -> Path:
        return self.root / RECIPE_NAME

    @property
    def split(self) -> Path:
        return self.root / SPLIT_NAME

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_NAME

    @property
    def warnings(self) -> Path:
        return self.root / WARNINGS_NAME

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD_DIR

    @property
    def state(self) -> Path:
        return self.root / STATE_NAME

    @property
    def group(self) -> Path:
        return self.root / GROUP_NAME

    def checkpoint(self, which: str = "best", stage: str | None = None) -> Path:
        """`best.pt` / `last.pt` of the run, or of one stage (`stages/<stage>/best.pt`)."""
        if which not in CHECKPOINTS:
            raise ValueError(f"checkpoint {which!r}: expected one of {', '.join(CHECKPOINTS)}")
        folder = self.root if stage is None else self.root / STAGES_DIR / stage
        return folder / f"{which}.pt"

    def eval_dir(self, checkpoint: str = "best", split: str = "test") -> Path:
        return self.root / EVAL_DIR / f"{checkpoint}-{split}"
