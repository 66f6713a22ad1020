"""PNG figures of evaluation and report: confusion matrix, motion maps, training curves.

matplotlib's object API on an Agg canvas (no pyplot, no display, no global state), as
`fpar.data.preview` does, so figures can be drawn from worker threads and on headless machines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fpar.io.atomic import atomic_path

CURVE_SERIES = (("train_loss_cls", "train L_cls"), ("train_loss_ms", "train L_ms"), ("val_loss", "val loss"))


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as temp:
        figure.savefig(temp, format="png")
    return path


def confusion_figure(matrix: np.ndarray, classes: Sequence[str], path: Path, title: str) -> Path:
    """The confusion matrix as a heat map, rows true and columns predicted, counts written in cells."""
    side = max(4.0, 0.35 * len(classes) + 2.0)
    figure = Figure(figsize=(side + 1.0, side), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="samples")
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=90, fontsize=7)
    ax.set_yticks(ticks, classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(classes) <= 30:  # counts stay legible up to about GTEA's size at this scale
        threshold = matrix.max() / 2 if matrix.size else 0
        for (row, col), count in np.ndenumerate(matrix):
            if count:
                ax.text(col, row, str(count), ha="center", va="center", fontsize=6,
                        color="white" if count > threshold else "black")
    ax.set_title(title, fontsize=9)
    return _save(figure, path)


def motion_figure(examples: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], path: Path, title: str) -> Path:
    """Per example (id, frames (T, H, W, 3) uint8, given (T, s, s), predicted (T, s, s)): three rows,
    the frame, the given motion map and the predicted one, one column per frame."""
    frames = max(len(example[1]) for example in examples)
    figure = Figure(figsize=(1.4 * frames + 1.2, 1.4 * 3 * len(examples) + 0.4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(3 * len(examples), frames, squeeze=False)
    for e, (sample_id, images, given, predicted) in enumerate(examples):
        rows = (("frame", images, {}), ("given", given, {"cmap": "gray", "vmin": 0, "vmax": 1}),
                ("predicted", predicted, {"cmap": "gray", "vmin": 0, "vmax": 1}))
        for r, (name, pictures, style) in enumerate(rows):
            row_axes = axes[3 * e + r]
            for t, ax in enumerate(row_axes):
                ax.set_xticks([])
                ax.set_yticks([])
                if t < len(pictures):
                    ax.imshow(pictures[t], interpolation="nearest", **style)
            row_axes[0].set_ylabel(f"{sample_id}\n{name}" if r == 0 else name, fontsize=7)
    figure.suptitle(title, fontsize=9)
    return _save(figure, path)


def _stage_marks(ax, stages: Sequence[str]) -> None:  # noqa: ANN001 (matplotlib Axes)
    """A dashed line where the stage changes, and the stage's name above the plot."""
    for x, stage in enumerate(stages):
        if x == 0 or stage != stages[x - 1]:
            if x:
                ax.axvline(x + 0.5, color="grey", linestyle="--", linewidth=0.8)
            ax.text(x + 1, 1.0, f" {stage}", transform=ax.get_xaxis_transform(), fontsize=7, va="bottom",
                    color="grey")


def _has_values(values: Sequence[float]) -> bool:
    return any(not math.isnan(v) for v in values)


def run_curves_figure(rows: Sequence[dict[str, float | str]], path: Path, title: str) -> Path:
    """One run: training losses (L_cls, L_ms) and validation loss per epoch, then train and validation
    accuracy per epoch. The x axis counts epochs over all stages; dashed lines mark stage boundaries."""
    figure = Figure(figsize=(8, 6), dpi=100)
    FigureCanvasAgg(figure)
    loss_ax, acc_ax = figure.subplots(2, 1, sharex=True)
    x = np.arange(1, len(rows) + 1)
    stages = [str(row["stage"]) for row in rows]
    for key, label in CURVE_SERIES:
        values = [float(row[key]) for row in rows]
        if _has_values(values):
            loss_ax.plot(x, values, marker=".", label=label)
    for key, label in (("train_acc", "train accuracy"), ("val_acc", "validation accuracy")):
        values = [float(row[key]) for row in rows]
        if _has_values(values):
            acc_ax.plot(x, values, marker=".", label=label)
    loss_ax.set_ylabel("loss")
    acc_ax.set_ylabel("accuracy")
    acc_ax.set_xlabel("epoch (all stages)")
    for ax in (loss_ax, acc_ax):
        _stage_marks(ax, stages)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def comparison_figure(runs: Sequence[tuple[str, Sequence[dict[str, float | str]]]], path: Path) -> Path:
    """All runs: training L_cls, training L_ms and validation accuracy per epoch, one line a run;
    stage boundaries are dotted ticks on each run's line. A run keeps its colour in every panel,
    also where another run has no line (L_ms exists only for MS models)."""
    figure = Figure(figsize=(9, 9), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(3, 1, sharex=True)
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    colours = {name: cycle[i % len(cycle)] for i, (name, _) in enumerate(runs)}
    panels = (("train_loss_cls", "train L_cls"), ("train_loss_ms", "train L_ms"), ("val_acc", "validation accuracy"))
    for ax, (key, label) in zip(axes, panels):
        for name, rows in runs:
            values = [float(row[key]) for row in rows]
            if not _has_values(values):
                continue
            x = np.arange(1, len(rows) + 1)
            ax.plot(x, values, label=name, color=colours[name])
            changes = [i for i in range(1, len(rows)) if rows[i]["stage"] != rows[i - 1]["stage"]]
            ax.plot(x[changes], np.asarray(values)[changes], linestyle="none", marker="|", markersize=12,
                    color=colours[name])
        ax.set_ylabel(label)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[-1].set_xlabel("epoch (all stages; | marks the first epoch of a new stage)")
    figure.suptitle("runs compared", fontsize=10)
    return _save(figure, path)
