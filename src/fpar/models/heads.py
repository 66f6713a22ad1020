"""Heads: the classifier, the motion-segmentation (MS) head and the feedback branch.

Sizes follow the reference (DESIGN section 7): MS head ReLU -> 1x1 conv 512->100 ("Conv100") ->
flatten -> fc to K*s*s; feedback branches 1x1 conv 100->64, ReLU, 1x1 conv 64->64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fpar.errors import ConfigError, FparError

MS_VARIANTS = {"classification": 2, "regression": 1}  # outputs per position
MS_CHANNELS = 100
STEM_CHANNELS = 64


class ClassifierHead(nn.Module):
    """Dropout then fc: Ego-RNN's `classifier` (dropout 0.7 RGB, 0.5 flow and two-stream)."""

    def __init__(self, in_features: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features: Tensor) -> Tensor:
        return self.fc(self.dropout(features))


class MotionSegmentationHead(nn.Module):
    """Per-frame moving / not-moving prediction on layer4's s x s positions.

    Its fc sees the flattened map, so the head, unlike the rest of the model, is built for one
    layer4 side `side` (one input size); a clip of another size is refused with a clear error.
    """

    def __init__(self, in_channels: int, side: int, variant: str = "classification") -> None:
        super().__init__()
        if variant not in MS_VARIANTS:
            raise ConfigError(f"ms_variant {variant!r}: expected one of {sorted(MS_VARIANTS)}")
        self.side = side
        self.outputs = MS_VARIANTS[variant]
        self.conv = nn.Conv2d(in_channels, MS_CHANNELS, kernel_size=1)
        self.fc = nn.Linear(MS_CHANNELS * side * side, self.outputs * side * side)

    def embed(self, layer4: Tensor) -> Tensor:
        """ReLU then Conv100: (B, 100, s, s), also the feedback branch's input."""
        if layer4.shape[-2:] != (self.side, self.side):
            raise FparError(
                f"the motion-segmentation head was built for a {self.side}x{self.side} layer4 map, "
                f"got {tuple(layer4.shape[-2:])}: resize the input to the model's image size"
            )
        return self.conv(F.relu(layer4))

    def classify(self, embedding: Tensor) -> Tensor:
        """(B, K, s, s) logits from Conv100's output: K = 2 classes, or 1 for regression."""
        return self.fc(embedding.flatten(1)).view(-1, self.outputs, self.side, self.side)


def _film_branch(in_channels: int, channels: int) -> nn.Sequential:
    branch = nn.Sequential(
        nn.Conv2d(in_channels, channels, kernel_size=1),
        nn.ReLU(),
        nn.Conv2d(channels, channels, kernel_size=1),
    )
    nn.init.zeros_(branch[2].weight)  # zero last conv: the branch starts as the identity modulation
    nn.init.zeros_(branch[2].bias)
    return branch


class FeedbackBranch(nn.Module):
    """The report's feedback: F' = (1 + delta_beta) * F + gamma on the stem's output F.

    delta_beta and gamma come from the MS head's Conv100 output, upsampled bilinearly to F's size.
    That output is taken as the head's fc reads it: Conv100 applied to ReLU(layer4), with no
    further ReLU (the head's one ReLU precedes Conv100), so the branch sees signed values.
    The last convs start at zero, so at initialisation F' = F and the model equals `rgb_ms`.

    Computed in a cheaper order with the same result: each branch's first 1x1 conv runs before the
    upsampling, on layer4's s x s map instead of the stem's 112 x 112 (a 1x1 conv and bilinear
    upsampling commute: both are linear, and the bilinear weights sum to one, so the bias passes
    through). delta_beta's last conv gets 1 added to its bias, and one addcmul gives F'. So the
    branches' last convs run through `F.conv2d`: a forward hook on them would not fire. Under bf16
    autocast the shifted bias is rounded near 1 (steps of 2^-8), the order of the rounding that
    `1 + delta_beta` and F' itself get in bf16 anyway.
    """

    def __init__(self, in_channels: int = MS_CHANNELS, channels: int = STEM_CHANNELS) -> None:
        super().__init__()
        self.delta_beta = _film_branch(in_channels, channels)
        self.gamma = _film_branch(in_channels, channels)

    def forward(self, source: Tensor, features: Tensor) -> Tensor:
        size = features.shape[-2:]
        beta = _upsampled_branch(self.delta_beta, source, size, bias_offset=1.0)
        return torch.addcmul(_upsampled_branch(self.gamma, source, size), features, beta)


def _upsampled_branch(branch: nn.Sequential, source: Tensor, size: torch.Size, bias_offset: float = 0.0) -> Tensor:
    """`branch` on `source` upsampled to `size`, its first conv run before the upsampling (class doc)."""
    first, relu, last = branch
    hidden = F.interpolate(first(source), size=size, mode="bilinear", align_corners=False)
    return F.conv2d(relu(hidden), last.weight, last.bias + bias_offset)
