"""The files of an evaluation folder (`RunDir.eval_dir(...)`, or `fpar eval --fuse --out DIR`).

The one module that knows their names and formats:

    metrics.json     every number, plus what was evaluated (checkpoint, split, protocol, test user)
    per_class.csv    class, samples, accuracy
    confusion.json   {"classes": [...], "matrix": [[...]]}, rows true, columns predicted
    confusion.csv    the same matrix with class names on both axes
    confusion.png    the same as a picture
    scores.csv       sample_id, label, predicted, then one logit column per class (fusion reads it)
    motion.png       MS models: given vs predicted motion maps of a few samples

Every file is written atomically, so a killed evaluation never leaves a half file that a report
would read.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fpar.errors import DataError, one_line
from fpar.evaluate.metrics import Scores
from fpar.io.atomic import write_atomic

METRICS_JSON = "metrics.json"
PER_CLASS_CSV = "per_class.csv"
CONFUSION_JSON = "confusion.json"
CONFUSION_CSV = "confusion.csv"
CONFUSION_PNG = "confusion.png"
SCORES_CSV = "scores.csv"
MOTION_PNG = "motion.png"
LOGIT_PREFIX = "logit:"
SCORES_HEAD = ("sample_id", "label", "predicted")


def _csv_text(rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _json_ready(value: Any) -> Any:
    """NaN becomes null (JSON has no NaN); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_metrics(folder: Path, metrics: dict[str, Any]) -> Path:
    return write_atomic(folder / METRICS_JSON, json.dumps(_json_ready(metrics), indent=2) + "\n")


def read_metrics(folder: Path) -> dict[str, Any] | None:
    """metrics.json of an evaluation folder, or None when it was never written."""
    from fpar.evaluate.runs import read_json

    path = folder / METRICS_JSON
    return read_json(path) if path.is_file() else None


def summary_line(folder: Path, m: dict[str, Any]) -> str:
    """The one line `fpar eval` prints for an evaluation: accuracies, pairs, motion maps, protocol."""
    line = (f"{folder}: {m['model']}, {m['samples']} samples, accuracy {100 * m['accuracy']:.2f}%, "
            f"verb {100 * m['verb_accuracy']:.2f}%, noun {100 * m['noun_accuracy']:.2f}%")
    for kind, found in (m.get("pairs") or {}).items():
        if found["accuracy"] is not None:
            line += f", {kind.replace('_', '-')} pairs {100 * found['accuracy']:.2f}%"
    if m.get("motion"):  # the moving class's IoU is null when no map, given or predicted, moves
        iou = m["motion"]["iou_moving"]
        line += (f", motion maps: pixel accuracy {100 * m['motion']['pixel_accuracy']:.1f}%, "
                 f"IoU {'n/a (nothing moving)' if iou is None else f'{100 * iou:.1f}%'}")
    return line + f" (protocol: {m['protocol']})"


def write_tables(folder: Path, scores: Scores, metrics: dict[str, Any], matrix: np.ndarray, name: str) -> None:
    """per_class.csv, confusion.json/.csv/.png and scores.csv; `name` (the run's) titles the picture."""
    from fpar.evaluate.figures import confusion_figure

    per_class = [["class", "samples", "accuracy"]]
    per_class += [[name, row["samples"], "" if row["accuracy"] is None else row["accuracy"]]
                  for name, row in metrics["per_class"].items()]
    write_atomic(folder / PER_CLASS_CSV, _csv_text(per_class))
    write_atomic(folder / CONFUSION_JSON, json.dumps({"classes": scores.classes, "matrix": matrix.tolist()}) + "\n")
    header = ["true \\ predicted", *scores.classes]
    write_atomic(folder / CONFUSION_CSV, _csv_text([header, *([name, *row] for name, row in
                                                              zip(scores.classes, matrix.tolist()))]))
    confusion_figure(matrix, scores.classes, folder / CONFUSION_PNG, title=f"{name} ({metrics['checkpoint']}, {metrics['split']}): "
                     f"accuracy {100 * metrics['accuracy']:.2f}% on {metrics['samples']} samples")
    write_scores(folder / SCORES_CSV, scores)


def write_scores(path: Path, scores: Scores) -> Path:
    """scores.csv: logits written with `repr`, so reading them back gives the same floats."""
    rows: list[list[Any]] = [[*SCORES_HEAD, *(LOGIT_PREFIX + name for name in scores.classes)]]
    for sample_id, label, predicted, logits in zip(scores.sample_ids, scores.labels, scores.predictions,
                                                   scores.logits):
        rows.append([sample_id, scores.classes[label], scores.classes[predicted], *map(repr, logits.tolist())])
    return write_atomic(path, _csv_text(rows))


def read_scores(path: Path) -> Scores:
    """scores.csv back as Scores; a missing or malformed file is a DataError naming it."""
    if not path.is_file():
        raise DataError(f"{path}: scores not found (run `fpar eval` on that run first)")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        header, body = rows[0], rows[1:]
        if tuple(header[:3]) != SCORES_HEAD or not all(h.startswith(LOGIT_PREFIX) for h in header[3:]):
            raise ValueError(f"header {header[:4]}... is not {list(SCORES_HEAD)} + logit columns")
        classes = [h[len(LOGIT_PREFIX):] for h in header[3:]]
        index = {name: k for k, name in enumerate(classes)}
        return Scores(sample_ids=[row[0] for row in body], labels=[index[row[1]] for row in body],
                      logits=np.array([[float(v) for v in row[3:]] for row in body]).reshape(len(body), len(classes)),
                      classes=classes)
    except (IndexError, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: malformed scores file ({one_line(exc)})") from exc
