"""ResNet-34 backbone from torchvision, split where the models need to reach in.

Ego-RNN's backbone is a ResNet-34 whose last layer4 block also returns its output before bn2 and
the ReLU (`conv2 + residual`): the attention multiplies that map, while the CAM that makes the
attention reads the usual BN + ReLU output. The feedback model modulates the stem (conv1, bn1,
ReLU) before the max-pool, so the forward is split into `stem` and `trunk`.

The modules keep torchvision's names (`conv1`, `bn1`, `layer1`..`layer4`, `fc`), so torchvision
and ImageNet state dicts load as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import ResNet, ResNet34_Weights, resnet34
from torchvision.models.resnet import BasicBlock

from fpar.errors import CheckpointError
from fpar.models.safe_load import load_state_dict, one_line

FEATURE_CHANNELS = 512  # layer4 of ResNet-34


@dataclass
class BackboneFeatures:
    """One pass of the backbone: `logits` are the ImageNet fc's (None without fc)."""

    layer4: Tensor  # after the last block's bn2 and ReLU
    layer4_pre_bn: Tensor  # the last block's conv2 + residual, before bn2 and ReLU
    logits: Tensor | None


def layer4_side(image_size: int) -> int:
    """Side of layer4's map for a square input: five stride-2 stages, each ceil(n / 2).

    224 -> 7, 112 -> 4, 64 -> 2. Only the MS head needs it ahead of time (its fc is sized by it).
    """
    side = image_size
    for _ in range(5):
        side = (side + 1) // 2
    return side


def _last_block_outputs(block: BasicBlock, x: Tensor) -> tuple[Tensor, Tensor]:
    """A BasicBlock's output (BN + ReLU) and its pre-BN twin `conv2 + residual`."""
    identity = x if block.downsample is None else block.downsample(x)
    out = block.conv2(F.relu(block.bn1(block.conv1(x))))
    return F.relu(block.bn2(out) + identity), out + identity


class ResNet34Backbone(nn.Module):
    """torchvision's ResNet-34 modules with a split forward; `fc` is None for the flow stream."""

    def __init__(self, net: ResNet, keep_fc: bool = True) -> None:
        super().__init__()
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4
        self.fc: nn.Linear | None = net.fc if keep_fc else None

    def stem(self, x: Tensor) -> Tensor:
        """conv1, bn1, ReLU: 64 channels at half the input side, where feedback modulates."""
        return F.relu(self.bn1(self.conv1(x)))

    @property
    def trunk_layers(self) -> tuple[nn.Module, ...]:
        """The modules `trunk` runs that hold state (layer1..layer4's BN)."""
        return self.layer1, self.layer2, self.layer3, self.layer4

    def trunk(self, stem: Tensor) -> BackboneFeatures:
        """Max-pool, layer1..layer4 (the last block twice-output), and the fc on the pooled map."""
        x = self.layer3(self.layer2(self.layer1(self.maxpool(stem))))
        x = self.layer4[:-1](x)
        layer4, layer4_pre_bn = _last_block_outputs(self.layer4[-1], x)
        logits = None if self.fc is None else self.fc(layer4.mean(dim=(2, 3)))
        return BackboneFeatures(layer4=layer4, layer4_pre_bn=layer4_pre_bn, logits=logits)

    def forward(self, x: Tensor) -> BackboneFeatures:
        return self.trunk(self.stem(x))


def cross_modality_conv1(conv1: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """conv1 for `in_channels` inputs: the RGB kernels averaged over RGB, repeated per channel.

    Ego-RNN's flow stream (after TSN's cross-modality initialisation) does exactly this, without
    rescaling; with random weights it is just another random initialisation.
    """
    new = nn.Conv2d(
        in_channels, conv1.out_channels, conv1.kernel_size, conv1.stride, conv1.padding, bias=False
    )
    with torch.no_grad():
        mean = conv1.weight.mean(dim=1, keepdim=True)
        new.weight.copy_(mean.expand(-1, in_channels, -1, -1))
    return new


def _imagenet_state_dict() -> dict[str, Tensor]:
    """torchvision's IMAGENET1K_V1 weights from the torch hub cache, downloading when missing.

    Read weights-only like every other torch file fpar reads (torch's `load_state_dict_from_url`
    would otherwise unpickle with `weights_only=False`).
    """
    weights = ResNet34_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    had_file = cached.is_file()
    try:
        return weights.get_state_dict(progress=False, weights_only=True)
    except Exception as exc:  # urllib, OS and hash errors all mean the same thing to the user
        problem = "cannot be read" if had_file else "is missing and could not be downloaded"
        raise CheckpointError(
            f"ImageNet weights {cached.name}: {cached} {problem} ({one_line(exc)}). On a machine with "
            f"internet fetch {weights.url} and copy it to {cached.parent}/ (set TORCH_HOME to move "
            "that folder), or give a local ResNet-34 state dict as the weights path."
        ) from exc


def _file_state_dict(path: Path) -> dict[str, Tensor]:
    """A torchvision-style ResNet-34 state dict saved with torch.save (read weights-only)."""
    return load_state_dict(path, "ResNet-34 state dict")


def load_resnet34(weights: str = "none") -> ResNet:
    """A torchvision ResNet-34 with `weights`: "none" (random), "imagenet", or a file path."""
    net = resnet34()
    if weights == "none":
        return net
    state = _imagenet_state_dict() if weights == "imagenet" else _file_state_dict(Path(weights))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:  # torch lists the missing, unexpected and mis-shaped keys
        raise CheckpointError(f"{weights}: not a ResNet-34 state dict: {one_line(exc)}") from exc
    return net


def build_backbone(weights: str = "none", in_channels: int = 3, keep_fc: bool = True) -> ResNet34Backbone:
    """The backbone of a stream: RGB keeps the ImageNet fc (the attention reads it), flow drops it."""
    net = load_resnet34(weights)
    if in_channels != net.conv1.in_channels:
        net.conv1 = cross_modality_conv1(net.conv1, in_channels)
    return ResNet34Backbone(net, keep_fc=keep_fc)
