"""The losses: L_cls, L_ms and L_tot = L_cls + alpha * L_ms (DESIGN sections 3 and 7).

L_ms compares the MS head's per-frame prediction on layer4's s x s positions with the motion
maps. The dataset gives the maps at the crop size (T, S, S) with the clip's flip and crop already
applied, so here they only need resizing, nearest-neighbour, to s x s: the resize lives in the
loss, where s is known from the logits, and no label is ever blended. Each of the s x s labels is
the map's pixel at the centre of its cell, as PIL's nearest resize gives it (the MS baseline
resizes its mode-"1" maps to 7x7 with PIL); torch's "nearest" would take the cell's top-left
pixel, half a layer4 cell up and left of the features that predict it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fpar.models.model import ModelOutput


def motion_targets(mmaps: Tensor, side: int) -> Tensor:
    """(B, T, S, S) 0/1 maps -> (B, T, side, side) int64 labels: each cell's centre pixel."""
    resized = F.interpolate(mmaps.float(), size=(side, side), mode="nearest-exact")
    return resized.long()


def ms_loss(ms_logits: Tensor, mmaps: Tensor) -> Tensor:
    """L_ms: the mean over batch, frames and positions of the per-position loss.

    `ms_logits` (B, T, K, s, s): K = 2 gives per-pixel cross entropy (not moving / moving); K = 1
    is the regression variant (sigmoid, then squared error against 0/1). One MS follower's
    regression target is instead a gray map shrunk bilinearly to s x s (a share of moving pixels
    per cell); ours keeps the 0/1 labels of the classification variant, so the two variants learn
    the same targets and differ only in the loss.
    """
    batch, steps, outputs, side, _ = ms_logits.shape
    targets = motion_targets(mmaps, side)
    logits = ms_logits.float().flatten(0, 1)  # (B*T, K, s, s)
    if outputs == 1:
        return F.mse_loss(torch.sigmoid(logits[:, 0]), targets.flatten(0, 1).float())
    return F.cross_entropy(logits, targets.flatten(0, 1))


@dataclass
class Losses:
    """The terms of one batch: `total` is what backpropagates; `ms` is None without an MS head."""

    total: Tensor
    cls: Tensor
    ms: Tensor | None


def compute_losses(output: ModelOutput, batch: dict[str, Tensor], alpha: float) -> Losses:
    """L_cls (cross entropy on the labels), L_ms when the model has an MS head, and their sum."""
    cls = F.cross_entropy(output.logits.float(), batch["label"])
    if output.ms_logits is None:
        return Losses(total=cls, cls=cls, ms=None)
    ms = ms_loss(output.ms_logits, batch["mmaps"])
    return Losses(total=cls + alpha * ms, cls=cls, ms=ms)
