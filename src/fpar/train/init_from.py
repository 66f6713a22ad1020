"""`init_from`: start a stage from other runs' checkpoints, loaded non-strictly with a key report.

A source is `RUN_DIR` (its best.pt), `RUN_DIR:stage` (that stage's best.pt) or a checkpoint file.
What fits by name and shape loads; the rest is reported (missing, unexpected, shape mismatch).
That is how two_stream starts from an rgb and a flow run (`streams.rgb.*`, `streams.flow.*`; the
joint classifier is new), rgb_ms from rgb stage 1 and the feedback model from rgb_ms.

Related or not: a source must hold the whole backbone of at least one of the model's streams
(`streams.<key>.backbone.*`, every tensor with its shape). A checkpoint of an unrelated model
(a flow run into an rgb model) loads nothing useful, so it is an error that shows the key report,
raised before anything trains or is written. A classifier trained on other class names is not
loaded (its rows would mean other classes), and the report says so; nor is a classifier of another
size, even in part: two_stream's joint fc (1024 inputs) would otherwise take a stream run's bias,
whose shape (the classes) fits, where Ego-RNN's joint model starts a fresh `nn.Linear`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from fpar.errors import CheckpointError
from fpar.models.checkpoints import KeyReport, key_report, load_partial_state, read_checkpoint
from fpar.train.rundir import RunDir

CLASSIFIER_PREFIX = "classifier."


def source_path(source: str) -> Path:
    """`RUN_DIR` -> RUN_DIR/best.pt; `RUN_DIR:stage` -> RUN_DIR/stages/<stage>/best.pt; else the file."""
    path = Path(source)
    if path.is_dir():
        return RunDir(path).checkpoint("best")
    run, sep, stage = source.rpartition(":")
    if sep and Path(run).is_dir():
        return RunDir(Path(run)).checkpoint("best", stage)
    return path


def summarize(keys: list[str], depth: int = 3) -> str:
    """Keys collapsed to their first `depth` name parts with counts: 'streams.rgb.lstm.* (8)'."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(".".join(key.split(".")[:depth]), []).append(key)
    return ", ".join(members[0] if len(members) == 1 else f"{prefix}.* ({len(members)})"
                     for prefix, members in groups.items())


def describe(report: KeyReport) -> str:
    """A KeyReport in one line, long key lists collapsed by module."""
    mismatched = [f"{k} {report.shapes.get(k, '')}".strip() for k in report.mismatched]
    parts = [f"missing {summarize(report.missing)}" if report.missing else "",
             f"unexpected {summarize(report.unexpected)}" if report.unexpected else "",
             f"shape mismatch {', '.join(mismatched)}" if mismatched else ""]
    return "; ".join(p for p in parts if p) or "all keys matched"


@dataclass
class Source:
    """A checked `init_from` source: its file and the part of its state that may load."""

    text: str
    path: Path
    state: dict[str, Tensor]
    skipped_classifier: str  # why the source's classifier is not loaded, or ""


def read_source(text: str, model: nn.Module, class_names: list[str]) -> Source:
    """Read `text`'s checkpoint and check it is related to `model` (see the module docstring)."""
    path = source_path(text)
    if not path.is_file():
        run = text.rpartition(":")[0] if ":" in text and not Path(text).exists() else text
        if not Path(run).exists():
            raise CheckpointError(f"init_from {text!r}: {Path(run).resolve()} not found (relative paths are from the "
                                  f"current folder); train that run first, or override the stage's init_from, e.g. "
                                  f"stages.0.init_from=[RUN_DIR:stage1]")
        raise CheckpointError(f"{path}: init_from {text!r}: checkpoint not found")
    checkpoint = read_checkpoint(path)
    state, own = checkpoint.state_dict, model.state_dict()
    head = {k: v for k, v in state.items() if k.startswith(CLASSIFIER_PREFIX)}
    skipped = ""
    if checkpoint.meta.class_names != list(class_names):
        skipped = "other class names"
    elif any(k not in own or own[k].shape != v.shape for k, v in head.items()):
        skipped = "another size; this model's is new"
    if skipped:
        state = {k: v for k, v in state.items() if k not in head}
    streams = sorted({k.split(".")[1] for k in own if k.startswith("streams.")})
    fits = [s for s in streams if all(k in state and state[k].shape == v.shape
                                      for k, v in own.items() if k.startswith(f"streams.{s}.backbone."))]
    if not fits:
        raise CheckpointError(
            f"{path}: init_from: a {checkpoint.meta.model_name!r} checkpoint unrelated to this model: "
            f"it holds no whole backbone of stream(s) {', '.join(streams)} ({describe(key_report(model, state))})")
    return Source(text, path, state, skipped)


def load_source(model: nn.Module, source: Source) -> str:
    """Load what fits; a one-line report of what did not."""
    report = load_partial_state(model, source.state)
    loaded = len(source.state) - len(report.unexpected) - len(report.mismatched)
    note = f"; classifier not loaded ({source.skipped_classifier})" if source.skipped_classifier else ""
    return f"init_from {source.path}: loaded {loaded} tensors; {describe(report)}{note}"
