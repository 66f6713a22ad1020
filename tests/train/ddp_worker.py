"""Test harness: `fpar train ARGS` (one process, or one of torchrun's) made comparable across world sizes.

Two random streams are per process and cannot match between one process and two: dropout masks
and augmentation draws (crop, flip). This harness removes both (dropout p=0; the training part
read with the evaluation transform), so what remains to compare is the data-parallel arithmetic:
which samples make each global step, and DDP's gradient average. BN stays in eval (the recipe's
`bn: eval`), so a batch's split over ranks does not change its statistics.

Environment: WEIGHTS=DIR (each rank saves its final weights as DIR/rank<r>.pt), STOP_AFTER=K
(every rank leaves after the run's K-th epoch is committed: a kill at an epoch boundary).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

import fpar.train.loop as loop
import fpar.train.run as run
from fpar.cli import main

torch.set_num_threads(1)
build_model, make_dataset, trainer_run = run.build_model, loop.make_dataset, loop.Trainer.run


def without_dropout(cfg):
    model = build_model(cfg)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def evaluation_transform(samples, classes, needs, cfg, train, segments=1):
    return make_dataset(samples, classes, needs, cfg, train=False, segments=segments)


def stop_after(epochs: int):
    def hook(step: int, row: dict) -> None:
        if step + 1 == epochs:
            sys.exit(3)
    return hook


def run_and_save_weights(self) -> None:
    if os.environ.get("STOP_AFTER"):
        self.on_epoch = stop_after(int(os.environ["STOP_AFTER"]))
    trainer_run(self)
    torch.save(self.model.state_dict(), Path(os.environ["WEIGHTS"]) / f"rank{self.processes.rank}.pt")


run.build_model, loop.make_dataset, loop.Trainer.run = without_dropout, evaluation_transform, run_and_save_weights
sys.argv = ["fpar", "train", *sys.argv[1:]]
main()
