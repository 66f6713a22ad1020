"""Warm-up: pre-train a ResNet-34 on single frames, a stand-in for ImageNet weights where there are none.

The recipes start their backbones from ImageNet (`model.weights: imagenet`). Where those weights
cannot be had (no internet, as on the machines fpar is built on), a random backbone kept frozen in
rgb stage 1 learns little. The warm-up gives the recipes a backbone that has seen many scenes:
torchvision's ResNet-34, all of it, trained to classify single frames of a pre-training corpus
(`fpar.data.synthetic.corpus`: synthetic users the data set does not have) with the first K rows
of its own 1000-way fc, BN in train mode, like ImageNet pre-training on a small scale. The other
rows are then zeroed with a low bias, so the fc's arg max (the class whose CAM the RGB streams'
attention uses) is always one of the K classes. The result is a plain torchvision state dict,
which any recipe loads as `model.weights: PATH` (the RGB streams keep its fc for their attention;
the flow stream builds its conv1 from it by cross-modality initialisation, as from ImageNet).

Why not frames of the data set's own training users: measured on the demo's data, a backbone
trained on two users' frames reached 96% on their frames and chance (13%) on a third user's; one
trained for as many steps on 24 corpus users reached 47% on that same unseen user (single frames
cannot tell take from put, so about 75% is the ceiling). The data set's users, the test user
above all, are never read: only the class names come from `data.root`.

A warm-up recipe (`fpar.config.WarmupRecipe`) is a recipe file with a `corpus` section (users,
users kept apart for the check, clips per class, stills per clip, rendered size, seed); `data`
gives the root (for its classes), `image_size` and `batch_size` (images a step); one stage
(epochs, optimizer, lr, schedule; `trains: [all]`). Augmentation: a random crop along the width
and a random horizontal flip per image.

    OUT/backbone.pt    the ResNet-34 state dict (written last: its presence means done)
    OUT/recipe.yaml    the resolved warm-up recipe
    OUT/metrics.csv    epoch, train loss, train frame accuracy, frame accuracy on the check users, seconds
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from rich.console import Console
from tqdm import tqdm

from fpar.config import CorpusConfig, WarmupRecipe, to_dict
from fpar.data.layout import class_names, discover
from fpar.data.synthetic.corpus import Frames, corpus_users, render_frames
from fpar.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from fpar.errors import ConfigError, DataError, FparError
from fpar.io.atomic import write_atomic
from fpar.models.backbone import load_resnet34
from fpar.terminal import make_console
from fpar.train.loop import AMP_MODES, epoch_seed, metrics_csv, pick_device, seed_everything
from fpar.train.run import claim_dir, resolved
from fpar.train.rundir import RunDir
from fpar.train.stages import check_stage, make_optimizer, make_scheduler, trained_lrs

BACKBONE_NAME = "backbone.pt"
WARMUP_COLUMNS = ("epoch", "train_loss", "train_acc", "check_acc", "seconds")
CORPUS_PREFIX = "W"  # corpus users are W01, W02, ...: names no data set of fpar synth uses
UNUSED_MARGIN = 10.0  # the fc rows beyond the K classes end this far below the lowest class bias


def backbone_path(out: Path) -> Path:
    """Where a warm-up writes its backbone (what recipes name as `model.weights`)."""
    return Path(out) / BACKBONE_NAME


def warm_up(recipe: WarmupRecipe, out: Path, console: Console | None = None) -> Path:
    """Train the backbone of the warm-up `recipe` (`load_recipe(path, schema=WarmupRecipe)`) into `out`;
    returns the backbone file.

    A finished warm-up (its backbone.pt exists, same recipe) is not redone; a run cut short starts
    over (about three minutes in the demo).
    """
    console = console or make_console()
    if not isinstance(recipe, WarmupRecipe):
        raise ConfigError("warm-up: load the recipe with schema=WarmupRecipe (it needs a corpus section)")
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


def _train(recipe: WarmupRecipe, console: Console) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """The stage's epochs over the corpus frames, each followed by the check users' frame accuracy."""
    data, stage, corpus = recipe.data, recipe.stages[0], recipe.corpus
    found = discover(data.root, data.layout)
    if not found.samples:
        raise DataError(f"{found.root}: no samples found in the {found.layout.name} layout")
    classes = class_names(found.samples, data.exclude_classes)
    device = pick_device(recipe.train)
    seed_everything(recipe.train.seed)
    net = load_resnet34(recipe.model.weights).to(device)
    if recipe.train.channels_last:  # the convolutions pick the weights' memory format
        net = net.to(memory_format=torch.channels_last)
    if len(classes) > net.fc.out_features:
        raise ConfigError(f"warm-up: {len(classes)} classes do not fit the backbone's {net.fc.out_features}-way fc")
    check_stage(stage)
    train_frames, check_frames = _corpus(corpus, classes, {s.user for s in found.samples})
    train_images, check_images = _to_tensor(train_frames, data.image_size), _to_tensor(check_frames, data.image_size)
    lrs = trained_lrs(net, stage)
    for name, param in net.named_parameters():
        param.requires_grad_(name in lrs)
    optimizer = make_optimizer(net, stage, lrs)
    scheduler = make_scheduler(optimizer, stage)
    amp = AMP_MODES[recipe.train.amp]
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp else nullcontext
    scaler = torch.amp.GradScaler(device.type, enabled=recipe.train.amp == "fp16")  # as the main loop: fp16
    # gradients this small would underflow to zero unscaled
    console.print(f"warm-up: ResNet-34 on {len(train_images)} frames of {corpus.users} corpus users "
                  f"({len(classes)} classes; the data set's users never read), {stage.epochs} epoch(s), "
                  f"{stage.optimizer} lr {stage.lr:g}, {device}", highlight=False)
    rows = []
    for epoch in range(stage.epochs):
        seed = epoch_seed(recipe.train.seed, 0, epoch)
        seed_everything(seed)
        start, loss_sum, correct, count = time.perf_counter(), 0.0, 0, 0
        net.train()
        order = torch.randperm(len(train_images))
        bar = tqdm(order.split(data.batch_size), desc=f"warm-up {epoch + 1}/{stage.epochs}", dynamic_ncols=True)
        for batch in bar:
            images = _augment(train_images[batch], data.image_size).to(device)
            labels = torch.from_numpy(train_frames.labels[batch.numpy()]).to(device)
            with autocast():
                logits = net(images)[:, :len(classes)]  # the K class rows; the other fc rows stay out of it
                loss = F.cross_entropy(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.item() * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            count += len(labels)
            bar.set_postfix(loss=f"{loss_sum / count:.4f}", acc=f"{correct / count:.3f}")
        scheduler.step()
        check = _accuracy(net, check_images, check_frames.labels, len(classes), device, autocast)
        rows.append({"epoch": epoch + 1, "train_loss": loss_sum / count, "train_acc": correct / count,
                     "check_acc": check, "seconds": round(time.perf_counter() - start, 3)})
        console.print(f"warm-up {epoch + 1}/{stage.epochs}: frame loss {loss_sum / count:.4f}, frame acc "
                      f"{correct / count:.4f}; on {corpus.check_users} unseen users {check:.4f}", highlight=False)
    with torch.no_grad():  # the untrained rows can never win the fc's arg max (the attention's class)
        net.fc.weight[len(classes):] = 0
        net.fc.bias[len(classes):] = net.fc.bias[:len(classes)].min() - UNUSED_MARGIN
    return net.cpu(), rows


def _corpus(corpus: CorpusConfig, classes: list[str], data_users: set[str]) -> tuple[Frames, Frames]:
    """The training and check frames; ConfigError when the renderer cannot draw a class."""
    if corpus.users < 1 or corpus.check_users < 1 or corpus.clips_per_class < 1 or corpus.frames < 1:
        raise ConfigError(f"corpus: users, check_users, clips_per_class and frames must be >= 1, got {corpus}")
    users = corpus_users(CORPUS_PREFIX, corpus.users + corpus.check_users)
    if data_users & set(users):
        raise ConfigError(f"corpus users {sorted(data_users & set(users))} are users of the data set; "
                          "the corpus must stand apart from it")
    size = (corpus.width, corpus.height)
    try:
        train = render_frames(classes, users[:corpus.users], corpus.clips_per_class, corpus.frames, size,
                              corpus.seed, "corpus")
        check = render_frames(classes, users[corpus.users:], 1, corpus.frames, size, corpus.seed, "check users")
    except FparError as exc:
        raise ConfigError(f"warm-up corpus: {exc}; the warm-up renders synthetic frames of the data set's "
                          "classes, so it serves data made by fpar synth") from exc
    return train, check


def _to_tensor(frames: Frames, side: int) -> torch.Tensor:
    """uint8 (N, 3, side, round(side * w / h)): the short side resized to the network's input, in
    chunks (the whole corpus in float would take 1.4 GB)."""
    images = torch.from_numpy(frames.images).permute(0, 3, 1, 2)
    height, width = images.shape[-2:]
    size = (side, round(side * width / height))
    return torch.cat([F.interpolate(chunk.float(), size=size, mode="area").round().byte()
                      for chunk in images.split(256)])


_MEAN, _STD = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _augment(images: torch.Tensor, side: int) -> torch.Tensor:
    """A random square crop along the width (one offset per batch) and a random flip per image."""
    offset = int(torch.randint(images.shape[-1] - side + 1, ()))
    crop = images[..., offset:offset + side]
    flip = torch.rand(len(crop)) < 0.5
    crop = torch.where(flip.view(-1, 1, 1, 1), crop.flip(-1), crop)
    return _normalise(crop)


def _normalise(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - _MEAN) / _STD


@torch.no_grad()
def _accuracy(net: torch.nn.Module, images: torch.Tensor, labels: np.ndarray, classes: int,
              device: torch.device, autocast: Callable[[], AbstractContextManager]) -> float:
    """Frame accuracy on centre crops, BN in eval mode."""
    net.eval()
    side, correct = images.shape[-2], 0
    offset = (images.shape[-1] - side) // 2
    for start in range(0, len(images), 64):
        crop = _normalise(images[start:start + 64, ..., offset:offset + side]).to(device)
        with autocast():
            predicted = net(crop)[:, :classes].argmax(1).cpu().numpy()
        correct += int((predicted == labels[start:start + 64]).sum())
    net.train()
    return correct / len(images)
