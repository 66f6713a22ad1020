"""Helpers of the evaluation tests: run dirs made by hand, as `fpar train` will leave them.

A run dir here is the trainer's contract (fpar.train.rundir): recipe.yaml, split.json,
metrics.csv, best.pt (a random-weight checkpoint of a tiny model), optionally warnings.txt.
A plainly named module (not conftest) so `from eval_kit import ...` meets no other conftest.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import torch
import yaml

from fpar.config import DataConfig, ModelConfig, Recipe, to_dict
from fpar.data.layout import class_names, discover, split_by_user
from fpar.data.transforms import NORMALIZATION
from fpar.models import CheckpointMeta, build_model, save_checkpoint
from fpar.train.rundir import METRICS_COLUMNS, RunDir

FRAMES, IMAGE_SIZE, MEM_SIZE, FLOW_STACK = 3, 64, 8, 2


def data_config(root: Path, **changes) -> DataConfig:
    return DataConfig(root=str(root), frames=FRAMES, flow_stack=FLOW_STACK, image_size=IMAGE_SIZE,
                      batch_size=4, workers=0, exclude_classes=[], **changes)


def make_run(folder: Path, root: Path, model: str = "rgb", seed: int = 0, test_user: str = "S2",
             selection: str = "val", metrics_rows: list[dict] | None = None, classes: list[str] | None = None,
             test_ids: list[str] | None = None) -> RunDir:
    """A run dir of a random-weight `model` (seeded by `seed`) on the prepared `root`."""
    run = RunDir(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = data_config(root, test_user=test_user, selection=selection)
    samples = discover(root).samples
    names = classes or class_names(samples)
    split = split_by_user(samples, test_user, data.val_fraction, selection, seed=0)
    run.split.write_text(json.dumps({
        "test_user": test_user, "selection": selection, "seed": seed, "classes": names,
        "train": [s.id for s in split.train], "val": [s.id for s in split.val],
        "test": test_ids if test_ids is not None else [s.id for s in split.test]}))
    torch.manual_seed(seed)
    config = ModelConfig(name=model, num_classes=len(names), frames=FRAMES, flow_stack=FLOW_STACK,
                         image_size=IMAGE_SIZE, mem_size=MEM_SIZE)
    run.recipe.write_text(yaml.safe_dump(to_dict(Recipe(data=data, model=config))))  # resolved: N, L, size as data's
    meta = CheckpointMeta(config=config, class_names=list(names),
                          normalization={key: NORMALIZATION[key] for key in ("rgb", "flow")})
    save_checkpoint(run.checkpoint("best"), build_model(config), meta,
                    extra={"stage": "stage1", "epoch": 2, "val_acc": 0.5, "test_user": test_user,
                           "selection": selection})
    run.checkpoint("last").unlink(missing_ok=True)
    os.link(run.checkpoint("best"), run.checkpoint("last"))  # same weights, no second 85 MB file
    write_metrics_csv(run, metrics_rows if metrics_rows is not None else default_metrics_rows())
    return run


def default_metrics_rows() -> list[dict]:
    """Two stages of two epochs; L_ms only in the second, as an MS model's recipe would log."""
    rows = []
    for i, stage in enumerate(("stage1", "stage1", "stage2", "stage2")):
        rows.append({"stage": stage, "epoch": i % 2 + 1, "train_loss": 2.0 - 0.2 * i, "train_loss_cls": 1.5 - 0.1 * i,
                     "train_loss_ms": "" if stage == "stage1" else 0.7 - 0.1 * i, "train_acc": 0.2 + 0.1 * i,
                     "val_loss": 1.9 - 0.1 * i, "val_acc": 0.25 + 0.05 * i, "lr": 1e-3, "seconds": 10.0})
    return rows


def write_metrics_csv(run: RunDir, rows: list[dict]) -> None:
    with run.metrics.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRICS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def make_group(folder: Path, kind: str, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    RunDir(folder).group.write_text(json.dumps({"kind": kind, "runs": names}))
    return folder
