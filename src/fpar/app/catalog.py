"""The checkpoints a runs folder offers the app, with their model name and test accuracy.

A checkpoint is any `*.pt` fpar checkpoint under the folder (a run's `best.pt` / `last.pt`, or
one written by `fpar import-egornn`), except a run's trainer state and its per-stage copies.
Test accuracy is `accuracy` in the run's `eval/<checkpoint>-test/metrics.json` (`fpar eval`),
when that file exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fpar.errors import FparError, one_line
from fpar.evaluate.outputs import METRICS_JSON
from fpar.models.checkpoints import read_checkpoint
from fpar.train.rundir import STAGES_DIR, STATE_NAME, RunDir


@dataclass(frozen=True)
class Entry:
    """One checkpoint the app can load."""

    path: Path
    model_name: str
    accuracy: float | None  # test accuracy in [0, 1], when evaluated

    def label(self, runs: Path) -> str:
        """`run/best.pt · rgb_ms · test 56.5%`, the name the page shows."""
        accuracy = "" if self.accuracy is None else f" · test {self.accuracy:.1%}"
        return f"{self.path.relative_to(runs)} · {self.model_name}{accuracy}"


def candidate_files(runs: Path) -> list[Path]:
    """`*.pt` under `runs`, without trainer states and `stages/` copies, sorted."""
    return sorted(p for p in Path(runs).rglob("*.pt")
                  if p.name != STATE_NAME and STAGES_DIR not in p.relative_to(runs).parts[:-1])


def test_accuracy(checkpoint: Path) -> float | None:
    """`accuracy` from `eval/<stem>-test/metrics.json` beside the checkpoint, or None."""
    metrics = RunDir(checkpoint.parent).eval_dir(checkpoint.stem, "test") / METRICS_JSON
    try:
        value = json.loads(metrics.read_text()).get("accuracy")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def describe(path: Path) -> Entry:
    """Read `path`'s header (weights-only) into an Entry; FparError if it is no fpar checkpoint."""
    meta = read_checkpoint(path).meta
    return Entry(path, meta.model_name, test_accuracy(path))


def find_checkpoints(runs: Path) -> tuple[list[Entry], list[str]]:
    """The fpar checkpoints under `runs`, and one line per `.pt` file skipped with its reason."""
    entries, skipped = [], []
    for path in candidate_files(runs):
        try:
            entries.append(describe(path))
        except FparError as exc:
            skipped.append(one_line(exc))
    return entries, skipped
