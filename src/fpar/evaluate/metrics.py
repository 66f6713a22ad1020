"""Metrics over per-sample scores: accuracy, per-class, verb / noun, confusion, class pairs, motion maps.

Pure NumPy over a `Scores` table, so one evaluation, a late fusion of several and a report all
compute them the same way and none of them needs a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Scores:
    """What a classifier said about each evaluated sample; `fpar eval` saves it as scores.csv.

    `logits` (n, K) are the model's raw scores (mean over windows when several flow windows were
    evaluated); `softmax(logits)` gives the probabilities. A late fusion stores the log of its fused
    probabilities, so the same rule holds for it.
    """

    sample_ids: list[str]
    labels: np.ndarray  # (n,) int: index into `classes`
    logits: np.ndarray  # (n, K) float
    classes: list[str]

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.logits = np.asarray(self.logits, dtype=np.float64)
        n = len(self.sample_ids)
        if self.labels.shape != (n,) or self.logits.shape != (n, len(self.classes)):
            raise ValueError(f"scores of {n} samples: labels {self.labels.shape}, logits {self.logits.shape}, "
                             f"{len(self.classes)} classes")

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1) if len(self.sample_ids) else np.zeros(0, dtype=np.int64)

    def probabilities(self) -> np.ndarray:
        """Softmax over classes, per sample (shifted by the row maximum, so it never overflows)."""
        shifted = self.logits - self.logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=1, keepdims=True)


def split_label(label: str) -> tuple[str, str]:
    """GTEA's `verb_noun` names split at the first `_`: take_cup -> (take, cup); no `_`: (label, "")."""
    verb, _, noun = label.partition("_")
    return verb, noun


def accuracy(scores: Scores) -> float:
    """Share of samples whose top class is the true one (NaN for no samples)."""
    return float(np.mean(scores.predictions == scores.labels)) if len(scores.labels) else float("nan")


def part_accuracy(scores: Scores, part: int) -> float:
    """Share of samples whose top class has the true class's verb (`part` 0) or noun (`part` 1)."""
    if not len(scores.labels):
        return float("nan")
    parts = [split_label(name)[part] for name in scores.classes]
    return float(np.mean([parts[p] == parts[t] for p, t in zip(scores.predictions, scores.labels)]))


def confusion_matrix(scores: Scores) -> np.ndarray:
    """(K, K) counts: row = true class, column = predicted class."""
    size = len(scores.classes)
    matrix = np.zeros((size, size), dtype=np.int64)
    np.add.at(matrix, (scores.labels, scores.predictions), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per class: its evaluated samples and the share classified right (None when it has none)."""
    totals = matrix.sum(axis=1)
    return {name: {"samples": int(totals[k]), "accuracy": float(matrix[k, k] / totals[k]) if totals[k] else None}
            for k, name in enumerate(classes)}


def pair_accuracy(scores: Scores, pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Accuracy of the binary decision within each class pair, and pooled over the pairs.

    For a pair (a, b): the samples whose true class is a or b; each is called a or b by whichever of
    the two has the higher logit (the other classes are ignored, a tie goes to a); the pair's accuracy
    is the share called right. So a model that confuses take_cup with put_cup scores about 0.5 on that
    pair even when it never predicts another class. `accuracy` pools the decisions of all pairs (a
    sample in two pairs counts twice); None when no pair has a sample.
    """
    index = {name: k for k, name in enumerate(scores.classes)}
    per_pair: dict[str, dict[str, Any]] = {}
    right = total = 0
    for a, b in pairs:
        ia, ib = index[a], index[b]
        members = np.isin(scores.labels, (ia, ib))
        called_b = scores.logits[members, ib] > scores.logits[members, ia]
        correct = int(np.sum(np.where(called_b, ib, ia) == scores.labels[members]))
        count = int(members.sum())
        per_pair[f"{a}/{b}"] = {"samples": count, "accuracy": correct / count if count else None}
        right, total = right + correct, total + count
    return {"accuracy": right / total if total else None, "samples": total, "pairs": per_pair}


def synthetic_pairs(classes: Sequence[str]) -> dict[str, list[tuple[str, str]]] | None:
    """The order-only and object-only pairs when every class is one `fpar synth` draws, else None.

    Real data (GTEA61: close_coffee, fold_bread, ...) has verbs synth cannot draw, so this is how a
    root written by `fpar synth` is recognised: by its class names, the only trace synth leaves there.
    """
    from fpar.data.synthetic import class_pairs
    from fpar.errors import FparError

    try:
        return class_pairs(list(classes))
    except FparError:
        return None


def classification_metrics(scores: Scores) -> dict[str, Any]:
    """Every score-based metric of one evaluation, as JSON-ready values."""
    matrix = confusion_matrix(scores)
    pairs = synthetic_pairs(scores.classes)
    return {
        "samples": len(scores.sample_ids),
        "accuracy": accuracy(scores),
        "verb_accuracy": part_accuracy(scores, 0),
        "noun_accuracy": part_accuracy(scores, 1),
        "per_class": per_class_accuracy(matrix, scores.classes),
        "pairs": None if pairs is None else {kind: pair_accuracy(scores, listed) for kind, listed in pairs.items()},
    }


@dataclass
class MotionCounts:
    """Pixel counts of predicted vs given motion maps (1 = moving), summed over samples and frames."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    frames: int = 0  # (sample, frame) maps counted

    def add(self, predicted: np.ndarray, given: np.ndarray) -> None:
        """Count one batch of (..., T, s, s) boolean maps."""
        predicted, given = np.asarray(predicted, dtype=bool), np.asarray(given, dtype=bool)
        self.tp += int(np.sum(predicted & given))
        self.fp += int(np.sum(predicted & ~given))
        self.fn += int(np.sum(~predicted & given))
        self.tn += int(np.sum(~predicted & ~given))
        self.frames += int(np.prod(given.shape[:-2]))

    def summary(self) -> dict[str, Any]:
        """Pixel accuracy, IoU of the moving class, IoU of the static class and their mean.

        An IoU whose union is empty (no pixel moves in either map) is None, not a perfect score.
        """
        total = self.tp + self.fp + self.fn + self.tn
        union_moving, union_static = self.tp + self.fp + self.fn, self.tn + self.fp + self.fn
        iou_moving = self.tp / union_moving if union_moving else None
        iou_static = self.tn / union_static if union_static else None
        ious = [v for v in (iou_moving, iou_static) if v is not None]
        return {
            "pixel_accuracy": (self.tp + self.tn) / total if total else None,
            "iou_moving": iou_moving,
            "iou_static": iou_static,
            "mean_iou": sum(ious) / len(ious) if ious else None,
            "moving_share_given": (self.tp + self.fn) / total if total else None,
            "moving_share_predicted": (self.tp + self.fp) / total if total else None,
            "frames": self.frames,
            "pixels": total,
        }
