"""`fpar eval`: run a trained checkpoint over the test (or validation) samples of its split.

Reads a run dir (`fpar.train.rundir`): recipe.yaml for the data root and transforms, split.json for
the sample ids and class list, best.pt / last.pt for the model. Writes the evaluation folder
(`fpar.evaluate.outputs`). Deterministic: the evaluation transform has no randomness (centre
crop, centre flow window or evenly spaced windows), samples keep split.json's order, and the
model runs in eval mode (no dropout, BN with its running statistics).

Several flow windows (`segments` > 1): the reference's flow evaluation averages the logits of
evenly spaced windows of L flows; here each window is a batch row of its own and the model's
logits are averaged over a sample's windows. Inputs other than flow (two_stream's RGB clip) are
repeated for each window, so two_stream's joint classifier sees every window with the same clip.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from fpar.config import load_recipe
from fpar.data.datasets import make_dataset
from fpar.data.layout import Sample, discover
from fpar.devices import resolve_device
from fpar.errors import CheckpointError, DataError, FparError
from fpar.evaluate.metrics import MotionCounts, Scores, classification_metrics, confusion_matrix
from fpar.evaluate.outputs import MOTION_PNG, read_metrics, write_metrics, write_tables
from fpar.evaluate.runs import SPLIT_PARTS, read_split, require_run, run_dirs
from fpar.models.checkpoints import load_model, read_checkpoint
from fpar.models.registry import build_model
from fpar.train.losses import motion_targets
from fpar.train.rundir import RunDir

MOTION_EXAMPLES = 3  # samples drawn in motion.png


@dataclass
class EvalResult:
    """One evaluation: where it was written and what it measured."""

    folder: Path
    metrics: dict[str, Any]
    scores: Scores


def file_digest(path: Path) -> str:
    """SHA-256 of a file: metrics.json records the checkpoint's, so a report sees a stale evaluation."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Flow windows averaged per sample where Ego-RNN's evaluation of the model averages several: its
# eval-run-flow.py (`--numSegs 5`); its RGB and joint two-stream evaluations read one clip, with the
# centre flow window (eval-run-twoStream-joint.py, `numSeg=1`). The default of `fpar eval`.
REFERENCE_SEGMENTS = {"flow": 5}


def is_current(run: RunDir, checkpoint: str, split: str, segments: int | None = None) -> bool:
    """Whether the run's evaluation folder holds an evaluation of the checkpoint as it is now (and,
    where `segments` is given, with that many flow windows)."""
    metrics = read_metrics(run.eval_dir(checkpoint, split))
    return (metrics is not None and metrics.get("checkpoint_sha256") == file_digest(run.checkpoint(checkpoint))
            and (segments is None or metrics.get("segments", 1) == segments))


def flow_segments(run: RunDir, checkpoint: str, segments: int) -> int:
    """`segments` where the run's model reads flow, else 1: fusing an RGB run with a flow run
    evaluated over several windows averages the windows of the flow run alone. The model is
    built on the meta device from the checkpoint's config, only to read its inputs."""
    if segments == 1:
        return 1
    config = dataclasses.replace(read_checkpoint(run.checkpoint(checkpoint)).meta.config, weights="none")
    with torch.device("meta"):
        return segments if "flow" in build_model(config).input_keys else 1


def evaluate_path(path: Path, checkpoint: str = "best", split: str = "test", **options: Any) -> list[EvalResult]:
    """Evaluate a run, or each run of a group dir (runs.json); see `evaluate_run` for the options."""
    return [evaluate_run(run, checkpoint, split, **options) for run in run_dirs(Path(path))]


def evaluate_run(path: Path, checkpoint: str = "best", split: str = "test", segments: int | None = None,
                 device: str = "auto", batch_size: int | None = None, workers: int = 0,
                 progress: bool = True) -> EvalResult:
    """Evaluate `checkpoint` (best|last) of the run at `path` on its `split` (test|val) samples and
    write the evaluation folder `RunDir(path).eval_dir(checkpoint, split)`. `segments`: flow
    windows per sample; None, Ego-RNN's protocol for the model (`REFERENCE_SEGMENTS`)."""
    if split not in SPLIT_PARTS:
        raise FparError(f"split {split!r}: expected one of {', '.join(SPLIT_PARTS)}")
    if segments is not None and segments < 1:
        raise FparError(f"segments must be at least 1, got {segments}")
    if batch_size is not None and batch_size < 1:
        raise FparError(f"batch size must be at least 1, got {batch_size}")
    run = require_run(path, checkpoint)
    recipe = load_recipe(run.recipe)
    split_data = read_split(run)
    checkpoint_path = run.checkpoint(checkpoint)
    model, meta = load_model(checkpoint_path)
    segments = REFERENCE_SEGMENTS.get(meta.model_name, 1) if segments is None else segments
    if list(meta.class_names) != split_data["classes"]:
        raise CheckpointError(f"{checkpoint_path}: its {len(meta.class_names)} classes differ from the "
                              f"{len(split_data['classes'])} of {run.split} (another run's checkpoint?)")
    if segments > 1 and "flow" not in model.input_keys:
        raise FparError(f"--segments {segments}: model {meta.model_name!r} reads no flow (only flow windows average)")
    samples = _split_samples(run, recipe.data.root, recipe.data.layout, split_data[split])
    data_cfg = dataclasses.replace(recipe.data, frames=meta.frames, flow_stack=meta.flow_stack,
                                   image_size=meta.image_size)  # the checkpoint's sizes are what it learnt on
    dataset = make_dataset(samples, meta.class_names, model.input_keys, data_cfg, train=False, segments=segments)
    torch_device = resolve_device(device)
    model.to(torch_device)
    loader = DataLoader(dataset, batch_size=batch_size if batch_size is not None else data_cfg.batch_size,
                        shuffle=False, num_workers=workers)

    ids: list[str] = []
    labels: list[Tensor] = []
    logits: list[Tensor] = []
    motion = MotionCounts() if "mmaps" in model.input_keys else None
    examples: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
    with torch.no_grad():
        for batch in tqdm(loader, desc=f"eval {run.root.name} {checkpoint}-{split}", unit="batch",
                          disable=not progress):
            inputs = {key: batch[key].to(torch_device) for key in model.input_keys}
            output_logits, ms_logits = _forward(model, inputs, segments)
            ids += batch["sample_id"]
            labels.append(batch["label"])
            logits.append(output_logits.float().cpu())
            if motion is not None and ms_logits is not None:
                given, predicted = _motion_maps(ms_logits, inputs["mmaps"])
                motion.add(predicted.cpu().numpy(), given.cpu().numpy())
                _keep_examples(examples, batch, given, predicted, meta.normalization["rgb"], ids[-len(given):])

    scores = Scores(ids, torch.cat(labels).numpy(), torch.cat(logits).numpy(), list(meta.class_names))
    extra = read_checkpoint(checkpoint_path).extra
    metrics: dict[str, Any] = {
        "run": str(run.root),
        "model": meta.model_name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "checkpoint": checkpoint,
        "checkpoint_file": str(checkpoint_path),
        "checkpoint_sha256": file_digest(checkpoint_path),
        "checkpoint_stage": extra.get("stage"),
        "checkpoint_epoch": extra.get("epoch"),
        "split": split,
        "protocol": split_data.get("selection", recipe.data.selection),
        "test_user": split_data.get("test_user", recipe.data.test_user),
        "segments": segments,
        "dropped": [f"{sample.id}: {why}" for sample, why in dataset.dropped],
        **classification_metrics(scores),
        "motion": None if motion is None else motion.summary(),
    }
    folder = run.eval_dir(checkpoint, split)
    write_tables(folder, scores, metrics, confusion_matrix(scores), run.root.name)
    if examples:
        from fpar.evaluate.figures import motion_figure

        summary = metrics["motion"]
        motion_figure(examples, folder / MOTION_PNG, f"{run.root.name}: motion maps, pixel accuracy "
                      f"{_percent(summary['pixel_accuracy'])}, IoU (moving) {_percent(summary['iou_moving'])}")
    write_metrics(folder, metrics)  # last: its presence means the folder is complete
    return EvalResult(folder, metrics, scores)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _split_samples(run: RunDir, root: str, layout: str, ids: list[str]) -> list[Sample]:
    """The samples of split.json's `ids`, in that order, found in the recipe's data root."""
    if not ids:
        raise DataError(f"{run.split}: this split part has no samples")
    if not root:
        raise DataError(f"{run.recipe}: data.root is empty")
    found = {sample.id: sample for sample in discover(root, layout).samples}
    missing = [sample_id for sample_id in ids if sample_id not in found]
    if missing:
        raise DataError(f"{run.split}: {len(missing)} sample(s) not in data root {root}, e.g. {missing[0]}")
    return [found[sample_id] for sample_id in ids]


def _forward(model: torch.nn.Module, inputs: dict[str, Tensor], segments: int) -> tuple[Tensor, Tensor | None]:
    """Logits (B, K), averaged over flow windows, and the MS head's logits (or None)."""
    if segments == 1:
        output = model(inputs)
        return output.logits, output.ms_logits
    flow = inputs["flow"]  # (B, S, 2L, H, W)
    flat = {key: value.repeat_interleave(segments, dim=0) for key, value in inputs.items() if key != "flow"}
    flat["flow"] = flow.flatten(0, 1)
    output = model(flat)
    return output.logits.unflatten(0, (flow.shape[0], segments)).mean(dim=1), None


def _motion_maps(ms_logits: Tensor, mmaps: Tensor) -> tuple[Tensor, Tensor]:
    """Given maps resized as L_ms sees them (`motion_targets`: nearest, to the head's s x s), and the
    head's predicted maps, both (B, T, s, s) bool.

    Two outputs per position (classification): moving where class 1 wins; one (regression): where
    the logit is positive, i.e. the sigmoid passes 0.5.
    """
    given = motion_targets(mmaps, ms_logits.shape[-1]).bool()
    predicted = ms_logits.argmax(dim=2) == 1 if ms_logits.shape[2] == 2 else ms_logits[:, :, 0] > 0
    return given, predicted


def _keep_examples(examples: list, batch: dict[str, Any], given: Tensor, predicted: Tensor,
                   norm: dict[str, list[float]], batch_ids: list[str]) -> None:
    """Keep the first MOTION_EXAMPLES samples' frames (denormalised to uint8) and maps for motion.png."""
    for i in range(min(MOTION_EXAMPLES - len(examples), len(given))):
        mean = torch.tensor(norm["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(norm["std"]).view(1, 3, 1, 1)
        frames = ((batch["rgb"][i] * std + mean).clamp(0, 1) * 255).byte().permute(0, 2, 3, 1).numpy()
        examples.append((batch_ids[i], frames, given[i].cpu().numpy(), predicted[i].cpu().numpy()))
