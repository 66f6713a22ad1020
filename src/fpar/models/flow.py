"""The flow stream: a ResNet-34 on a stack of L warp-flow frames (Ego-RNN's temporal stream).

Input: `batch["flow"]` (B, 2L, H, W), the x and y flow images interleaved x1, y1, x2, y2, ...,
each an 8-bit flow image normalised with mean 0.449 and std 0.226 (ImageNet's means averaged).

Horizontal flip convention (`fpar.data.transforms.ClipTransform.flow` applies it): mirroring a
flow stack reverses horizontal motion, so every x image is also inverted (v -> 255 - v on the
8-bit image, i.e. x flow negated around the quantisation centre 128); y images are only mirrored.
"""

from __future__ import annotations

from torch import Tensor, nn

from fpar.config import ModelConfig
from fpar.models.backbone import FEATURE_CHANNELS, ResNet34Backbone, build_backbone
from fpar.models.heads import ClassifierHead
from fpar.models.model import ActionModel, StreamOutput
from fpar.models.registry import register_model

FLOW_DROPOUT = 0.5


class FlowStream(nn.Module):
    """Backbone with 2L input channels; feature = average-pooled layer4 (Ego-RNN's `x1`)."""

    def __init__(self, backbone: ResNet34Backbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, stack: Tensor) -> StreamOutput:
        layer4 = self.backbone(stack).layer4
        return StreamOutput(features=layer4.mean(dim=(2, 3)), feature_maps=layer4)


def flow_stream(cfg: ModelConfig) -> FlowStream:
    """conv1 over 2L channels from the RGB conv1 (cross-modality init); no ImageNet fc."""
    return FlowStream(build_backbone(cfg.weights, in_channels=2 * cfg.flow_stack, keep_fc=False))


@register_model("flow")
def build_flow(cfg: ModelConfig) -> ActionModel:
    """ResNet-34 on a stack of L warp-flow x/y frames (Temporal Warp Flow)."""
    return ActionModel({"flow": flow_stream(cfg)}, ClassifierHead(FEATURE_CHANNELS, cfg.num_classes, FLOW_DROPOUT))
