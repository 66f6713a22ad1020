"""`fpar eval --fuse`: late fusion of the per-stream scores that `fpar eval` saved.

Rule: per run, softmax of its logits; then the weighted mean of these probabilities (weights
normalised to sum 1; equal by default). Probabilities, not logits, because streams trained apart
have logits of different scales, and a weight should mean a share of the vote. The fused scores
are stored as log-probabilities, so softmax gives back the fused probabilities and a fused folder
reads like any other evaluation (`fpar report` lists it as a row).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fpar.errors import FparError
from fpar.evaluate.evaluation import EvalResult, evaluate_run, flow_segments, is_current
from fpar.evaluate.metrics import Scores, classification_metrics, confusion_matrix
from fpar.evaluate.outputs import SCORES_CSV, read_metrics, read_scores, write_metrics, write_tables
from fpar.evaluate.runs import require_run

FUSION_RULE = "weighted mean of per-run softmax probabilities (weights normalised to sum 1)"


def check_weights(weights: Sequence[float], runs: int) -> None:
    """FparError unless there is one non-negative weight per run and their sum is positive."""
    if len(weights) != runs:
        raise FparError(f"{len(weights)} weights for {runs} runs: give one weight per run")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise FparError(f"weights {list(weights)}: need finite, non-negative weights with a positive sum")


def fuse_scores(named: Sequence[tuple[Path, Scores]], weights: Sequence[float]) -> Scores:
    """Fuse scores read from the files named; samples are matched by id (the first file's order).

    A FparError names the file when its classes, sample ids or labels differ from the first's.
    """
    check_weights(weights, len(named))
    (first_path, first), *others = named
    fused = np.zeros_like(first.logits)
    for (path, scores), weight in zip(named, weights):
        if scores.classes != first.classes:
            raise FparError(f"{path}: classes differ from {first_path}'s; fuse runs of the same class list")
        order = {sample_id: k for k, sample_id in enumerate(scores.sample_ids)}
        if set(order) != set(first.sample_ids) or len(order) != len(scores.sample_ids):
            raise FparError(f"{path}: its {len(scores.sample_ids)} samples are not the {len(first.sample_ids)} of "
                            f"{first_path}; fuse runs evaluated on the same test samples")
        rows = [order[sample_id] for sample_id in first.sample_ids]
        if not np.array_equal(scores.labels[rows], first.labels):
            raise FparError(f"{path}: sample labels differ from {first_path}'s")
        fused += weight * scores.probabilities()[rows]
    fused /= sum(weights)
    with np.errstate(divide="ignore"):  # a probability of exactly 0 becomes -inf: still ranks last
        return Scores(list(first.sample_ids), first.labels.copy(), np.log(fused), list(first.classes))


def fuse_runs(runs: Sequence[Path], out: Path, weights: Sequence[float] | None = None, checkpoint: str = "best",
              split: str = "test", segments: int | None = None, **eval_options: Any) -> EvalResult:
    """Fuse the saved scores of `runs` and write an evaluation folder at `out` with the same metrics
    as `fpar eval` (no motion maps).

    A run without a current evaluation is evaluated first. `segments` given: flow-reading runs must
    have been evaluated over that many windows (else they are again). None: a saved evaluation counts
    whatever its windows, one made again keeps the count of the one it replaces, and a first one gets
    `fpar eval`'s default (Ego-RNN's protocol for the model).
    """
    if len(runs) < 2:
        raise FparError(f"--fuse needs at least two runs, got {len(runs)}")
    weights = list(weights) if weights else [1.0] * len(runs)
    check_weights(weights, len(runs))  # before any run is evaluated: a typo costs no evaluation
    named, sources = [], []
    for path in runs:
        run = require_run(path, checkpoint)
        folder = run.eval_dir(checkpoint, split)
        windows = None if segments is None else flow_segments(run, checkpoint, segments)
        if not is_current(run, checkpoint, split, windows):
            if windows is None:
                windows = (read_metrics(folder) or {}).get("segments")
            evaluate_run(path, checkpoint, split, segments=windows, **eval_options)
        named.append((folder / SCORES_CSV, read_scores(folder / SCORES_CSV)))
        sources.append(read_metrics(folder) or {})
    scores = fuse_scores(named, weights)
    protocols = sorted({str(source.get("protocol")) for source in sources})
    metrics: dict[str, Any] = {
        "run": str(out),
        "model": "+".join(str(source.get("model")) for source in sources),
        "parameters": sum(int(source.get("parameters") or 0) for source in sources),
        "checkpoint": checkpoint,
        "split": split,
        "protocol": protocols[0] if len(protocols) == 1 else "mixed: " + ", ".join(protocols),
        "test_user": sources[0].get("test_user"),
        "fusion": {"runs": [str(Path(p).resolve()) for p in runs], "weights": weights, "rule": FUSION_RULE,
                   "segments": segments,
                   "source_segments": [source.get("segments", 1) for source in sources],  # windows each run used
                   # what `fpar report` checks to know the fused number still stands for these checkpoints
                   "checkpoint_sha256": [source.get("checkpoint_sha256") for source in sources]},
        **classification_metrics(scores),
        "motion": None,
    }
    out = Path(out)
    write_tables(out, scores, metrics, confusion_matrix(scores), f"fusion of {metrics['model']}")
    write_metrics(out, metrics)
    return EvalResult(out, metrics, scores)
