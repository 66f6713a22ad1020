"""Warm-up: train a ResNet-34 on single frames, as a stand-in for ImageNet weights where there are none.

The recipes start their backbones from ImageNet (`model.weights: imagenet`). Where those weights
cannot be had (no internet, as on the machines fpar is built on), a random backbone kept frozen in
rgb stage 1 learns little: its BatchNorm statistics are the initial 0/1, its features noise. The
warm-up gives the recipes a backbone that has seen images: torchvision's ResNet-34, all of it,
trained to classify single frames of the *training* part of the split (never the validation part,
never the test user) with the first K rows of its own 1000-way fc, BN in train mode, like ImageNet
pre-training on a small scale. The other rows are then zeroed with a low bias, so the fc's arg max
(the class whose CAM the RGB streams' attention uses) is always one of the K classes. The result
is a plain torchvision state dict, which any recipe loads as `model.weights: PATH` (the RGB
streams keep its fc for their attention; the flow stream builds its conv1 from it by
cross-modality initialisation, as from ImageNet).

A warm-up recipe is an ordinary recipe file: `data` (root, test user, N frames per clip, size,
batch), `train` (seed, device, amp) and one stage (epochs, optimizer, lr, schedule; `trains: [all]`).
The frames come from the RGB clip dataset (N per clip, one crop and flip per clip) and are
flattened into a batch of B*N images.

    OUT/backbone.pt    the ResNet-34 state dict (written last: its presence means done)
    OUT/recipe.yaml    the resolved warm-up recipe
    OUT/metrics.csv    epoch, train loss, train frame accuracy, seconds
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from rich.console import Console
from torch.utils.data import DataLoader
from tqdm import tqdm

from fpar.config import Recipe, to_dict
from fpar.data.datasets import make_dataset
from fpar.data.layout import class_names, discover, split_by_user
from fpar.errors import ConfigError, DataError
from fpar.io.atomic import write_atomic
from fpar.models.backbone import load_resnet34
from fpar.train.loop import AMP_MODES, epoch_seed, metrics_csv, pick_device, seed_everything
from fpar.train.run import claim_dir, resolved
from fpar.train.rundir import RunDir
from fpar.train.stages import check_stage, make_optimizer, make_scheduler, trained_lrs

BACKBONE_NAME = "backbone.pt"
WARMUP_COLUMNS = ("epoch", "train_loss", "train_acc", "seconds")
UNUSED_MARGIN = 10.0  # the fc rows beyond the K classes end this far below the lowest class bias


def backbone_path(out: Path) -> Path:
    """Where a warm-up writes its backbone (what recipes name as `model.weights`)."""
    return Path(out) / BACKBONE_NAME


def warm_up(recipe: Recipe, out: Path, console: Console | None = None) -> Path:
    """Train the backbone of the warm-up `recipe` (see `load_recipe`) into `out`; returns the backbone file.

    A finished warm-up (its backbone.pt exists, same recipe) is not redone; a run cut short starts
    over (it takes a minute or two).
    """
    console = console or Console()
    recipe = resolved(recipe)
    if len(recipe.stages) != 1:
        raise ConfigError(f"warm-up recipe: exactly one stage expected, got {len(recipe.stages)}")
    target = backbone_path(out)
    run = RunDir(out)
    if claim_dir(run, recipe) and target.is_file():
        console.print(f"warm-up already complete: {target}", highlight=False)
        return target
    write_atomic(run.recipe, OmegaConf.to_yaml(to_dict(recipe)))
    net, rows = _train(recipe, console)
    write_atomic(run.metrics, metrics_csv(rows, WARMUP_COLUMNS))
    write_atomic(target, lambda handle: torch.save(net.state_dict(), handle))
    return target


def _train(recipe: Recipe, console: Console) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """The stage's epochs over single frames of the split's training part."""
    data, stage = recipe.data, recipe.stages[0]
    found = discover(data.root, data.layout)
    if not found.samples:
        raise DataError(f"{found.root}: no samples found in the {found.layout.name} layout")
    classes = class_names(found.samples, data.exclude_classes)
    split = split_by_user(found.samples, data.test_user, data.val_fraction, data.selection, recipe.train.seed)
    device = pick_device(recipe.train)
    seed_everything(recipe.train.seed)
    net = load_resnet34(recipe.model.weights).to(device)
    if len(classes) > net.fc.out_features:
        raise ConfigError(f"warm-up: {len(classes)} classes do not fit the backbone's {net.fc.out_features}-way fc")
    check_stage(stage)
    lrs = trained_lrs(net, stage)
    for name, param in net.named_parameters():
        param.requires_grad_(name in lrs)
    optimizer = make_optimizer(net, stage, lrs)
    scheduler = make_scheduler(optimizer, stage)
    dataset = make_dataset(split.train, classes, ("rgb",), data, train=True)
    amp = AMP_MODES[recipe.train.amp]
    console.print(f"warm-up: ResNet-34 on single frames of {len(dataset)} training clips x {data.frames} frames "
                  f"(test user {split.test_user} and the validation part never seen), {stage.epochs} epoch(s), "
                  f"{stage.optimizer} lr {stage.lr:g}, {device}", highlight=False)
    rows = []
    for epoch in range(stage.epochs):
        seed = epoch_seed(recipe.train.seed, 0, epoch)
        seed_everything(seed)
        start, loss_sum, correct, count = time.perf_counter(), 0.0, 0, 0
        net.train()
        loader = DataLoader(dataset, batch_size=data.batch_size, shuffle=True, num_workers=data.workers,
                            generator=torch.Generator().manual_seed(seed))
        bar = tqdm(loader, desc=f"warm-up {epoch + 1}/{stage.epochs}", dynamic_ncols=True)
        for batch in bar:
            images = batch["rgb"].flatten(0, 1).to(device)  # (B*T, 3, S, S): every frame is one example
            labels = batch["label"].repeat_interleave(batch["rgb"].shape[1]).to(device)
            with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
                logits = net(images)
                logits = logits[:, :len(classes)]  # the K class rows; the other fc rows stay out of it
                loss = F.cross_entropy(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            count += len(labels)
            bar.set_postfix(loss=f"{loss_sum / count:.4f}", acc=f"{correct / count:.3f}")
        scheduler.step()
        rows.append({"epoch": epoch + 1, "train_loss": loss_sum / count, "train_acc": correct / count,
                     "seconds": round(time.perf_counter() - start, 3)})
        console.print(f"warm-up {epoch + 1}/{stage.epochs}: frame loss {loss_sum / count:.4f}, "
                      f"frame acc {correct / count:.4f}", highlight=False)
    with torch.no_grad():  # the untrained rows can never win the fc's arg max (the attention's class)
        net.fc.weight[len(classes):] = 0
        net.fc.bias[len(classes):] = net.fc.bias[:len(classes)].min() - UNUSED_MARGIN
    return net.cpu(), rows
