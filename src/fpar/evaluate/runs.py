"""Reading what the trainer leaves in a run directory (names from `fpar.train.rundir` only).

Everything here checks the files it reads and raises one-line FparErrors that name the file, so
`fpar eval` and `fpar report` fail the same way on a half-made or foreign folder.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpar.errors import DataError, FparError, one_line
from fpar.train.rundir import CHECKPOINTS, METRICS_COLUMNS, RunDir

SPLIT_PARTS = ("test", "val")
GROUP_KINDS = ("splits", "seeds")


@dataclass(frozen=True)
class Group:
    """A folder of runs (runs.json): the four leave-one-user-out splits, or several seeds."""

    root: Path
    kind: str
    runs: list[Path]


def read_group(path: Path) -> Group | None:
    """The group `path` holds (its runs.json), or None when `path` is a single run."""
    group_file = RunDir(path).group
    if not group_file.is_file():
        return None
    data = read_json(group_file)
    kind, runs = data.get("kind"), data.get("runs")
    if kind not in GROUP_KINDS or not isinstance(runs, list) or not runs or not all(isinstance(r, str) for r in runs):
        raise DataError(f"{group_file}: expected {{\"kind\": \"splits\"|\"seeds\", \"runs\": [names of run dirs]}}")
    return Group(Path(path), kind, [Path(path) / name for name in runs])


def run_dirs(path: Path) -> list[Path]:
    """The runs under `path`: its group's runs, or `path` itself."""
    group = read_group(Path(path))
    return group.runs if group else [Path(path)]


def require_run(path: Path, checkpoint: str) -> RunDir:
    """The run dir at `path`, checked to hold a recipe, a split and the `checkpoint` (best|last)."""
    if checkpoint not in CHECKPOINTS:
        raise FparError(f"checkpoint {checkpoint!r}: expected one of {', '.join(CHECKPOINTS)}")
    run = RunDir(Path(path))
    if run.root.is_file():
        raise DataError(f"{run.root}: a file, not a run dir; give the run's folder ({run.root.parent}) and "
                        f"pick its checkpoint with --checkpoint best|last")
    if not run.root.is_dir():
        raise DataError(f"{run.root}: run dir not found")
    for needed, what in ((run.recipe, "recipe"), (run.split, "split")):
        if not needed.is_file():
            raise DataError(f"{needed}: not found, so {run.root} is no run dir of `fpar train` (no {what})")
    if not run.checkpoint(checkpoint).is_file():
        raise DataError(f"{run.checkpoint(checkpoint)}: checkpoint not found (has {run.root} trained an epoch?)")
    return run


def read_split(run: RunDir) -> dict[str, Any]:
    """split.json, checked: classes and the test / val id lists are lists of strings."""
    data = read_json(run.split)
    for key in ("classes", *SPLIT_PARTS):
        value = data.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise DataError(f"{run.split}: {key!r} must be a list of names")
    return data


def read_metrics_csv(run: RunDir) -> list[dict[str, float | str]]:
    """metrics.csv rows: `stage` as text, the other columns as floats (NaN where the cell is empty)."""
    path = run.metrics
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != METRICS_COLUMNS:
            raise DataError(f"{path}: columns {reader.fieldnames} differ from {list(METRICS_COLUMNS)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append({key: row[key] if key == "stage" else (float(row[key]) if row[key] else math.nan)
                             for key in METRICS_COLUMNS})
            except (TypeError, ValueError) as exc:
                raise DataError(f"{path}: line {line}: {one_line(exc)}") from exc
    return rows


def read_warnings(run: RunDir) -> list[str]:
    """The lines of warnings.txt (none when the file is absent)."""
    if not run.warnings.is_file():
        return []
    return [line.strip() for line in run.warnings.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable JSON ({one_line(exc)})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data

