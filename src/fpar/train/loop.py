"""The training loop: the recipe's stages in order, one epoch at a time, resumable exactly.

An epoch: reseed from (seed, stage, epoch); one pass over the training part (tqdm bar with loss
and accuracy); validation; then the files: the stage's and the run's last.pt, a pending best
checkpoint when validation accuracy improved, metrics.csv, TensorBoard, state.pt (the commit), and
only then the pending best renamed to best.pt. A resumed run promotes a pending best of the epoch
state.pt committed and drops any other, so best.pt never holds a lost attempt's weights.

Exact resume. Data order, augmentation draws and dropout are functions of (train.seed, stage
index, epoch): each epoch reseeds Python, NumPy and torch, and each pass's batches carry that seed
with every index (`batches.RunBatches`): the order is a function of it, and each item's draws are a
function of it and the item's index, whatever the number of workers (one DataLoader serves the whole
run and loads ahead across passes). So an epoch boundary has no RNG state worth saving; state.pt
holds the rest (weights, optimizer, scheduler, GradScaler, stage, epoch, best accuracy, metrics
rows), written atomically after the epoch's other files. A kill loses at most the epoch in progress,
which the resumed run redoes with the same draws, so it ends bit-identical to an uninterrupted run
on the same device and thread count.

Frozen parts cost no gradients: parameters a stage does not train have requires_grad False, so in
rgb stage 1 no backward runs through the backbone. Its features are still recomputed every epoch,
on purpose: each epoch draws new crops and flips, so the features change; caching them would
train on one fixed augmentation.

Scale-out (`fpar.train.distributed`): `Processes` picks this rank's samples and its share of the
global batch, sums the metrics, lets rank 0 alone write, and wraps the model for DDP at each
stage's start (after freezing). `self.model` stays the plain module: checkpoints and validation use
it. Each rank's RNG is seeded with the epoch's seed plus its rank (its augmentation and dropout
draws differ); the data order comes from the epoch's seed alone, the same on every rank.
"""

from __future__ import annotations

import csv
import io
import os
import random
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from rich.console import Console
from tqdm import tqdm

from fpar.config import TrainConfig
from fpar.data.datasets import ClipDataset, make_dataset
from fpar.data.transforms import NORMALIZATION
from fpar.devices import resolve_device
from fpar.errors import ConfigError
from fpar.io.atomic import atomic_path, write_atomic
from fpar.models.checkpoints import CheckpointMeta, read_checkpoint, save_checkpoint
from fpar.models.memory_format import channels_last_input, channels_last_model
from fpar.models.safe_load import load_weights_only
from fpar.train.batches import Pass, RunBatches
from fpar.train.cuda_graphs import GraphedStep, use_cuda_graphs
from fpar.train.distributed import Processes
from fpar.train.init_from import load_source
from fpar.train.losses import Losses, compute_losses
from fpar.train.rundir import METRICS_COLUMNS, RunDir
from fpar.train.stages import (freeze_all_but, load_optimizer_state, make_optimizer, make_scheduler, set_modes,
                               trained_lrs)

if TYPE_CHECKING:
    from fpar.train.run import Plan

AMP_MODES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# Called after each epoch is committed: (epoch number over the whole run, from 0; its metrics row).
# The alpha search reports validation accuracy through it; raising stops the run at an epoch boundary.
EpochHook = Callable[[int, dict[str, Any]], None]


def pick_device(cfg: TrainConfig) -> torch.device:
    """train.device ("auto": CUDA when present), checked together with train.amp and
    train.cuda_graphs (for one process; the trainer checks again with its count)."""
    device = resolve_device(cfg.device, "train.device")
    if cfg.amp not in AMP_MODES:
        raise ConfigError(f"train.amp {cfg.amp!r}: expected one of {', '.join(AMP_MODES)}")
    if cfg.amp == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp fp16 needs a CUDA device; use bf16 on the CPU")
    use_cuda_graphs(cfg, device, processes=1)
    return device


def epoch_seed(seed: int, stage: int, epoch: int) -> int:
    """The seed of one epoch: a function of (seed, stage index, epoch) alone."""
    return int(np.random.SeedSequence([seed, stage, epoch]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pending_best(run: RunDir, stage: str, epoch: int) -> Path:
    """Where epoch `epoch`'s (from 1) new best checkpoint waits until state.pt has committed it."""
    return run.checkpoint("best", stage).with_name(f".best-epoch{epoch}.pt.pending")


def promote_best(run: RunDir, stage: str, epoch: int) -> None:
    """The pending best of `epoch` becomes the stage's best.pt and the run's."""
    os.replace(pending_best(run, stage, epoch), run.checkpoint("best", stage))
    publish(run.checkpoint("best", stage), run.checkpoint("best"))


def settle_pending_best(run: RunDir, stage: str, state: dict[str, Any]) -> None:
    """After a kill: the pending best of the epoch state.pt committed is promoted (the kill came
    between the commit and the rename); one of an epoch it did not commit is dropped. So best.pt
    always holds the weights metrics.csv and state.pt name, even where a redone epoch is not
    bit-exact (a GPU's non-deterministic kernels) and scores lower than the lost attempt."""
    committed = pending_best(run, stage, state["epoch"])
    for pending in committed.parent.glob(".best-epoch*.pt.pending"):
        if pending == committed and state.get("improved"):
            promote_best(run, stage, state["epoch"])
        else:
            pending.unlink()


def publish(source: Path, target: Path) -> None:
    """`target` becomes the file `source` is (a hard link, else a copy), atomically."""
    with atomic_path(target) as temp:
        temp.unlink()
        try:
            os.link(source, temp)
        except OSError:
            shutil.copyfile(source, temp)


def to_device(batch: dict[str, Any], device: torch.device, channels_last: bool) -> dict[str, Any]:
    """`batch`'s tensors on `device` (without waiting, from pinned memory), laid out channels_last
    under `train.channels_last` (`models.memory_format`): what a step is fed."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last:
                value = channels_last_input(value)
        out[key] = value
    return out


class Trainer:
    """Runs a checked `Plan` into a run dir; `run()` starts or continues where state.pt says."""

    def __init__(self, plan: Plan, run: RunDir, console: Console, processes: Processes = Processes(),
                 on_epoch: EpochHook | None = None) -> None:
        self.plan, self.run_dir, self.console, self.processes = plan, run, console, processes
        self.on_epoch = on_epoch
        recipe = plan.recipe
        self.cfg, self.stages = recipe.train, recipe.stages
        self.device = processes.device(pick_device(self.cfg))
        self.model = plan.model.to(self.device)
        if self.cfg.channels_last:
            channels_last_model(self.model)
        self.forward = torch.compile(self.model) if self.cfg.compile else self.model  # validation's
        self.train_forward = self.forward  # training's: inside DDP under several processes (`_begin_stage`)
        needs = self.model.input_keys
        self.train_set = make_dataset(plan.split.train, plan.classes, needs, recipe.data, train=True)
        self.val_set = make_dataset(plan.split.val, plan.classes, needs, recipe.data, train=False)
        normalization = {k: NORMALIZATION[k] for k in needs if k in NORMALIZATION}
        self.meta = CheckpointMeta(recipe.model, plan.classes, normalization)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.cfg.amp == "fp16")
        self.graphs = use_cuda_graphs(self.cfg, self.device, processes.world_size)
        self.rows: list[dict[str, Any]] = []
        self.best = -1.0
        self.writer: Any = None  # TensorBoard, opened by `run` on the main process
        self.batches: RunBatches | None = None  # every pass's batches, made by `run` from where it starts

    # ---- the run ------------------------------------------------------------------------------
    def run(self) -> None:
        state = load_weights_only(self.run_dir.state, "trainer state") if self.run_dir.state.is_file() else None
        first = state["stage"] if state else 0
        if state:
            self.rows, self.best = state["rows"], state["best"]
            if self.processes.is_main:
                settle_pending_best(self.run_dir, self.stages[first].name, state)
            self.console.print(f"resuming {self.run_dir.root}: stage {self.stages[first].name}, "
                               f"{state['epoch']} epoch(s) done", highlight=False)
        protocol = self._announce()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.run_dir.tensorboard), purge_step=len(self.rows) + 1) \
            if self.processes.is_main else None
        if self.writer and not self.rows:
            self.writer.add_text("protocol", protocol)
        left = [(index, epoch) for index in range(first, len(self.stages))
                for epoch in range(state["epoch"] if state and index == first else 0, self.stages[index].epochs)]
        try:
            self.batches = self._batches(left)
            for index in range(first, len(self.stages)):
                resumed = state if state and index == first else None
                self._begin_stage(index, resumed)
                for epoch in range(resumed["epoch"] if resumed else 0, self.stages[index].epochs):
                    row = self._epoch(index, epoch)
                    if self.on_epoch:
                        self.on_epoch(sum(s.epochs for s in self.stages[:index]) + epoch, row)
        finally:
            if self.writer:
                self.writer.close()
            if self.batches:
                self.batches.close()  # its workers end here, also when a pass raised
        self.console.print(f"done: {self.run_dir.root} (best val acc of stage {self.stages[-1].name}: "
                           f"{self.best:.4f}; selection={self.plan.split.selection})", highlight=False)

    def _announce(self) -> str:
        """Print what trains on what, and which checkpoint-selection protocol; returns the latter."""
        split = self.plan.split
        if split.selection == "test":
            protocol = f"selection=test (the reference protocol): checkpoints chosen on the test user {split.test_user}"
        else:
            protocol = f"selection=val: checkpoints chosen on a validation part; test user {split.test_user} kept apart"
        self.console.print(f"{self.plan.recipe.model.name}: {len(self.train_set)} train, {len(self.val_set)} val "
                           f"clips, {len(self.plan.classes)} classes, {self.device}; {protocol}", highlight=False)
        return protocol

    def _begin_stage(self, index: int, state: dict[str, Any] | None) -> None:
        """Weights (state.pt, else the previous stage's best, then init_from), freezing, optimizer."""
        stage = self.stages[index]
        if state:
            self.model.load_state_dict(state["model"])
        else:
            if index > 0:
                previous = self.run_dir.checkpoint("best", self.stages[index - 1].name)
                self.model.load_state_dict(read_checkpoint(previous).state_dict)
            for source in self.plan.sources[stage.name]:
                self.console.print(load_source(self.model, source), highlight=False, soft_wrap=True)
            self.best = -1.0
        lrs = trained_lrs(self.model, stage)
        self.trained = set(lrs)
        freeze_all_but(self.model, self.trained)
        wrapped = self.processes.wrap(self.model, self.device)
        if wrapped is not self.model:
            self.train_forward = torch.compile(wrapped) if self.cfg.compile else wrapped
        self.optimizer = make_optimizer(self.model, stage, lrs)
        self.scheduler = make_scheduler(self.optimizer, stage)
        if state:
            load_optimizer_state(self.optimizer, state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
        self.train_step = GraphedStep(self._train_step, self.optimizer, self.model) if self.graphs else self._train_step
        count = sum(p.numel() for n, p in self.model.named_parameters() if n in self.trained)
        self.console.print(f"stage {stage.name}: {stage.epochs} epoch(s), {stage.optimizer} lr {stage.lr:g}, "
                           f"trains {len(self.trained)} tensors ({count:,} parameters), BN {stage.bn}"
                           f"{', steps replayed from a CUDA graph' if self.graphs else ''}", highlight=False)

    def _epoch(self, index: int, epoch: int) -> dict[str, Any]:
        stage = self.stages[index]
        seed = epoch_seed(self.cfg.seed, index, epoch)
        seed_everything(seed + self.processes.rank)
        start = time.perf_counter()
        lr = self.scheduler.get_last_lr()[0] / self.scheduler.base_lrs[0] * stage.lr  # the `trains` LR now
        set_modes(self.model, self.trained, stage.bn)
        train = self._pass("train", seed, train=True, desc=f"{stage.name} {epoch + 1}/{stage.epochs}")
        self.model.eval()
        val = self._pass("val", seed, train=False, desc="validation")
        self.scheduler.step()
        row = {"stage": stage.name, "epoch": epoch + 1, "train_loss": train["loss"], "train_loss_cls": train["cls"],
               "train_loss_ms": train["ms"], "train_acc": train["acc"], "val_loss": val["loss"],
               "val_acc": val["acc"], "lr": lr, "seconds": round(time.perf_counter() - start, 3)}
        if self.processes.is_main:
            self._save(index, row)
        self.processes.barrier()  # the next stage's ranks read this epoch's checkpoints
        self.console.print(f"{stage.name} {epoch + 1}/{stage.epochs}: train loss {train['loss']:.4f} acc "
                           f"{train['acc']:.4f}, val loss {val['loss']:.4f} acc {val['acc']:.4f}", highlight=False)
        return row

    def _batches(self, epochs: list[tuple[int, int]]) -> RunBatches:
        """The batches of every pass of `epochs` ((stage index, epoch) pairs): training, then
        validation, each drawn from the epoch's seed."""
        seeds = [epoch_seed(self.cfg.seed, index, epoch) for index, epoch in epochs]
        data = self.plan.recipe.data
        return RunBatches(self.processes, {"train": self.train_set, "val": self.val_set},
                          self.processes.batch_size(data.batch_size),
                          [Pass(part, seed) for seed in seeds for part in ("train", "val")],
                          data.workers, self.cfg.seed + self.processes.rank, pin_memory=self.device.type == "cuda")

    def _pass(self, which: str, seed: int, train: bool, desc: str) -> dict[str, Any]:
        """One pass over the `which` ("train" or "val") part: mean losses and accuracy (summed over
        processes)."""
        count, batches = self.batches.take(Pass(which, seed))
        sums = torch.zeros(5, dtype=torch.float64, device=self.device)  # loss, cls, ms, correct, count
        has_ms = False
        bar = tqdm(batches, total=count, desc=desc, leave=train, disable=not self.processes.is_main, dynamic_ncols=True)
        for step, batch in enumerate(bar):
            batch = to_device(batch, self.device, self.cfg.channels_last)
            if train:
                logits, losses = self.train_step(batch)
            else:
                with torch.no_grad(), self._autocast():
                    output = self.forward(batch)
                    logits, losses = output.logits, compute_losses(output, batch, self.cfg.alpha)
            n = batch["label"].numel()
            has_ms = losses.ms is not None
            ms = losses.ms.detach() if has_ms else torch.zeros((), device=self.device)
            correct = (logits.argmax(1) == batch["label"]).sum()
            sums += torch.stack([losses.total.detach() * n, losses.cls.detach() * n, ms * n, correct, torch.tensor(n)
                                 .to(self.device)]).double()
            if step % 10 == 0 or step == count - 1:
                bar.set_postfix(loss=f"{sums[0] / sums[4]:.4f}", acc=f"{sums[3] / sums[4]:.3f}")
        loss, cls, ms, correct, count = self.processes.sum(sums).tolist()
        return {"loss": loss / count, "cls": cls / count, "ms": ms / count if has_ms else "", "acc": correct / count}

    def _autocast(self, cache: bool = True) -> Any:
        """train.amp's autocast; `cache`: keep its casts of the weights for the block (PyTorch's
        notes on CUDA graphs ask for it off in a captured step)."""
        amp = AMP_MODES[self.cfg.amp]
        return torch.autocast(self.device.type, dtype=amp, cache_enabled=cache) if amp else nullcontext()

    def _train_step(self, batch: dict[str, Any]) -> tuple[torch.Tensor, Losses]:
        """One optimizer step on `batch`: the logits and losses (what `GraphedStep` captures)."""
        with self._autocast(cache=not self.graphs):
            output = self.train_forward(batch)
            losses = compute_losses(output, batch, self.cfg.alpha)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses.total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return output.logits, losses

    # ---- files --------------------------------------------------------------------------------
    def _save(self, index: int, row: dict[str, Any]) -> None:
        """Checkpoints, metrics.csv and TensorBoard, then state.pt (the commit point of the epoch)."""
        stage, run = self.stages[index], self.run_dir
        self.rows.append(row)
        extra = {"stage": stage.name, "epoch": row["epoch"], "val_acc": row["val_acc"],
                 "test_user": self.plan.split.test_user, "selection": self.plan.split.selection}
        save_checkpoint(run.checkpoint("last", stage.name), self.model, self.meta, extra)
        publish(run.checkpoint("last", stage.name), run.checkpoint("last"))
        improved = row["val_acc"] > self.best
        if improved:  # the new best waits beside best.pt until state.pt commits this epoch
            self.best = row["val_acc"]
            save_checkpoint(pending_best(run, stage.name, row["epoch"]), self.model, self.meta, extra)
        write_atomic(run.metrics, metrics_csv(self.rows))
        step = len(self.rows)
        for key in ("train_loss", "train_loss_cls", "train_loss_ms", "train_acc", "val_loss", "val_acc", "lr"):
            if row[key] != "":
                self.writer.add_scalar(key, row[key], step)
        self.writer.flush()
        state = {"stage": index, "epoch": row["epoch"], "best": self.best, "rows": self.rows, "improved": improved,
                 "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}
        write_atomic(run.state, lambda handle: torch.save(state, handle))
        if improved:
            promote_best(run, stage.name, row["epoch"])


def metrics_csv(rows: list[dict[str, Any]], columns: tuple[str, ...] = METRICS_COLUMNS) -> str:
    """metrics.csv's text: `columns`, one row per epoch, empty cells where a value does not apply."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()
