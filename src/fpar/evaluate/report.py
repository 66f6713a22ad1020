"""`fpar report`: the comparison table of runs and their training curves.

One row per argument: a run dir, a group dir (runs.json: four splits or several seeds, shown as
mean +- sample standard deviation over its runs), or a fused evaluation folder (`fpar eval --fuse`).
A run with no evaluation of the chosen checkpoint (or one older than the checkpoint) is
evaluated first: evaluation is deterministic and writes the same folder `fpar eval` would, so the
table always shows what `fpar eval` says, and a report is one command after training. A run
evaluated here gets `fpar eval`'s default, Ego-RNN's protocol for its model (flow over 5 windows,
`evaluation.REFERENCE_SEGMENTS`); one the user evaluated over another window count is shown as it
is. The protocol column gives the window count wherever it is over one.

The seed report's published GTEA61 accuracies sit in their own column, labelled as published:
they were measured on GTEA61 by the report's authors, never by this code, and are never mixed into
our numbers or aggregates.

    out/table.md, out/table.csv     the table (Markdown with notes and warnings; CSV numbers only)
    out/curves/<run>.png            per run: L_cls, L_ms, val loss; train and val accuracy per epoch
    out/curves.png                  all runs compared
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fpar.errors import FparError
from fpar.evaluate.evaluation import evaluate_run, file_digest, is_current
from fpar.evaluate.figures import comparison_figure, run_curves_figure
from fpar.evaluate.fusion import fuse_runs
from fpar.evaluate.outputs import METRICS_JSON, read_metrics
from fpar.evaluate.runs import read_group, read_metrics_csv, read_warnings, require_run
from fpar.io.atomic import write_atomic
from fpar.train.rundir import RunDir

# The seed report's GTEA61 results (N=7), by our model name; rgb_ms has no published number.
PUBLISHED_GTEA61 = {"flow": 42.24, "rgb": 52.56, "two_stream": 67.10, "rgb_ms_feedback": 56.48}
PROTOCOLS = {"val": "val (checkpoint chosen on a validation part)",
             "test": "test (checkpoint chosen on the test user, as the reference)"}
TABLE_MD, TABLE_CSV, CURVES_DIR, CURVES_PNG = "table.md", "table.csv", "curves", "curves.png"
CSV_COLUMNS = ("name", "model", "runs", "kind", "{split}_accuracy_mean", "{split}_accuracy_std", "protocol",
               "test_users", "parameters", "training_seconds", "order_only_mean", "order_only_std", "object_only_mean",
               "object_only_std", "published_gtea61")


@dataclass
class Row:
    """One line of the table: a run, a group of runs, or a fusion."""

    name: str
    kind: str  # "run", "splits", "seeds" or "fusion"
    evaluations: list[dict[str, Any]]  # metrics.json of each run
    training_seconds: float | None
    warnings: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        return "/".join(dict.fromkeys(str(e["model"]) for e in self.evaluations))

    def values(self, key: str) -> list[float]:
        """Per run, in percent: the accuracy (`key` "accuracy") or a pair kind's pooled accuracy."""
        if key == "accuracy":
            found = [e["accuracy"] for e in self.evaluations]
        else:
            found = [((e.get("pairs") or {}).get(key) or {}).get("accuracy") for e in self.evaluations]
        return [100 * v for v in found if v is not None]


@dataclass
class Report:
    rows: list[Row]
    table_md: Path
    table_csv: Path
    figures: list[Path]


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1; None for one value or none)."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def format_mean_std(values: Sequence[float]) -> str:
    mean, std = mean_std(values)
    if mean is None:
        return "-"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f} (n={len(values)})"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def _evaluation(run: Path, checkpoint: str, split: str, eval_options: dict[str, Any]) -> dict[str, Any]:
    """metrics.json of the run's evaluation, evaluating it first when missing or stale."""
    rundir = require_run(run, checkpoint)
    if not is_current(rundir, checkpoint, split):
        return evaluate_run(run, checkpoint, split, **eval_options).metrics
    return read_metrics(rundir.eval_dir(checkpoint, split)) or {}


def _training_seconds(runs: Sequence[Path]) -> float | None:
    total = [row["seconds"] for run in runs for row in read_metrics_csv(RunDir(run))]
    known = [float(v) for v in total if not math.isnan(float(v))]
    return sum(known) if known else None


def _fusion(path: Path, checkpoint: str, split: str,
            eval_options: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """metrics.json of a fused folder and the row's warnings. Fused again when a source checkpoint
    changed since; shown as saved, with a warning, when a source is gone; a fusion of another
    checkpoint or split than the table's is refused (its number would sit under the wrong heading)."""
    fused = read_metrics(path) or {}
    if "fusion" not in fused:
        raise FparError(f"{path / METRICS_JSON}: an evaluation folder that is no fusion; pass its run dir")
    if (fused.get("checkpoint"), fused.get("split")) != (checkpoint, split):
        raise FparError(f"{path}: a fusion of the {fused.get('checkpoint')} checkpoints on the {fused.get('split')} "
                        f"split, but the table is of {checkpoint} on {split}: fuse again with --checkpoint "
                        f"{checkpoint} --split {split} into another folder")
    fusion = fused["fusion"]
    runs = [Path(run) for run in fusion["runs"]]
    gone = [run for run in runs if not RunDir(run).checkpoint(checkpoint).is_file()]
    if gone:
        return fused, [f"fused from {gone[0]}, whose {checkpoint} checkpoint is gone: shown as fused then"]
    if fusion.get("checkpoint_sha256") != [file_digest(RunDir(run).checkpoint(checkpoint)) for run in runs]:
        fused = fuse_runs(runs, path, fusion["weights"], checkpoint, split, segments=fusion.get("segments"),
                          **eval_options).metrics
    return fused, []


def collect_row(path: Path, name: str, checkpoint: str, split: str,
                eval_options: dict[str, Any]) -> tuple[Row, list[Path]]:
    """The row of one argument, named `name`, and the run dirs behind it (none for a fusion folder)."""
    path = Path(path)
    if (path / METRICS_JSON).is_file() and not RunDir(path).recipe.is_file():
        fused, warnings = _fusion(path, checkpoint, split, eval_options)
        return Row(name, "fusion", [fused], None, warnings), []
    group = read_group(path)
    runs = group.runs if group else [path]
    evaluations = [_evaluation(run, checkpoint, split, eval_options) for run in runs]
    warnings = [f"{run.name}: {line}" for run in runs for line in read_warnings(RunDir(run))]
    return Row(name, group.kind if group else "run", evaluations, _training_seconds(runs), warnings), runs


def row_names(paths: Sequence[Path]) -> list[str]:
    """Each argument's folder name, or parent/name where two arguments share a folder name (their
    rows, curve files and colours must not merge)."""
    names = [Path(path).name for path in paths]
    return [f"{Path(path).parent.name}/{name}" if names.count(name) > 1 else name for path, name in zip(paths, names)]


def build_report(paths: Sequence[Path], out: Path, checkpoint: str = "best", split: str = "test",
                 **eval_options: Any) -> Report:
    """Write the table and the figures for `paths` (runs, groups, fusions) into `out`."""
    if not paths:
        raise FparError("fpar report: name at least one run dir")
    out = Path(out)
    collected = [(Path(path), *collect_row(path, name, checkpoint, split, eval_options))
                 for path, name in zip(paths, row_names(paths))]
    rows = [row for _, row, _ in collected]  # every argument read before anything is written into `out`
    curves, figures = [], []
    for path, row, runs in collected:
        for run in runs:
            metrics_rows = read_metrics_csv(RunDir(run))
            label = f"{row.name}/{run.name}" if run != path else row.name
            if metrics_rows:
                curves.append((label, metrics_rows))
                figures.append(run_curves_figure(metrics_rows, out / CURVES_DIR / f"{label.replace('/', '-')}.png",
                                                 f"{label} ({row.model})"))
    if curves:
        figures.append(comparison_figure(curves, out / CURVES_PNG))
    table_md = write_atomic(out / TABLE_MD, markdown_table(rows, checkpoint, split))
    table_csv = write_atomic(out / TABLE_CSV, csv_table(rows, split))
    return Report(rows, table_md, table_csv, figures)


def _protocol(row: Row) -> str:
    found = sorted({str(e.get("protocol")) for e in row.evaluations})
    windows = sorted({int(n) for e in row.evaluations
                      for n in [e.get("segments", 1), *(e.get("fusion") or {}).get("source_segments", [])]} - {1})
    averaged = f"; {'/'.join(map(str, windows))} flow windows averaged" if windows else ""
    return ", ".join(PROTOCOLS.get(p, p) for p in found) + averaged


def _test_users(row: Row) -> str:
    return ",".join(dict.fromkeys(str(e.get("test_user")) for e in row.evaluations))


def _parameters(row: Row) -> int | None:
    counts = {e.get("parameters") for e in row.evaluations}
    return counts.pop() if len(counts) == 1 else None


def _per_run(row: Row) -> str:
    """A group's accuracies run by run ("52.5 / 40.0 / 50.0", in runs.json's order); "-" for one run."""
    values = row.values("accuracy")
    return " / ".join(f"{v:.1f}" for v in values) if len(values) > 1 else "-"


def markdown_table(rows: Sequence[Row], checkpoint: str, split: str) -> str:
    head = ("run", "model", f"{split} accuracy (%)", "per run (%)", "protocol", "test user", "parameters",
            "training time", "order-only pairs (%)", "object-only pairs (%)", "published GTEA61 (%), seed report, not ours")
    lines = [
        "# fpar report", "",
        f"Our numbers: checkpoint `{checkpoint}`, evaluated on the `{split}` split. A group of runs shows "
        "mean ± sample std over its runs. Pair columns (synthetic data only): accuracy of the binary "
        "decision within class pairs that differ only in temporal order / only in the object. "
        "The last column is copied from the seed report (GTEA61, N=7); it was not measured here and "
        "is not comparable to runs on other data.", "",
        "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
    ]
    for row in rows:
        published = PUBLISHED_GTEA61.get(row.model)
        params = _parameters(row)
        cells = (row.name + ("" if row.kind == "run" else f" ({row.kind})"), row.model,
                 format_mean_std(row.values("accuracy")), _per_run(row), _protocol(row), _test_users(row),
                 "-" if params is None else f"{params:,}", format_duration(row.training_seconds),
                 format_mean_std(row.values("order_only")), format_mean_std(row.values("object_only")),
                 "-" if published is None else f"{published:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    warnings = [f"- {row.name}: {line}" for row in rows for line in row.warnings]
    if warnings:
        lines += ["", "## Warnings (from the runs' warnings.txt)", "", *warnings]
    return "\n".join(lines) + "\n"


def csv_table(rows: Sequence[Row], split: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([column.format(split=split) for column in CSV_COLUMNS])
    for row in rows:
        acc, order, objects = (mean_std(row.values(k)) for k in ("accuracy", "order_only", "object_only"))
        writer.writerow(["" if v is None else v for v in (
            row.name, row.model, len(row.evaluations), row.kind, *acc,
            ";".join(sorted({str(e.get("protocol")) for e in row.evaluations})), _test_users(row),
            _parameters(row), row.training_seconds, *order, *objects, PUBLISHED_GTEA61.get(row.model))])
    return buffer.getvalue()
