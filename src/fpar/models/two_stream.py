"""Ego-RNN's joint two-stream model: flow and RGB features concatenated, one classifier.

Input: `batch["flow"]` and `batch["rgb"]`, the two at the same image size (their feature maps are
concatenated too, for CAM). The streams are the plain `flow` and `rgb` streams under the same
module names (`streams.flow`, `streams.rgb`), so their trained weights load into this model by
name; only the joint `classifier` (dropout 0.5, fc 1024 -> classes) is new.
"""

from __future__ import annotations

from fpar.config import ModelConfig
from fpar.models.backbone import FEATURE_CHANNELS
from fpar.models.flow import flow_stream
from fpar.models.heads import ClassifierHead
from fpar.models.model import ActionModel
from fpar.models.registry import register_model
from fpar.models.rgb import rgb_stream

JOINT_DROPOUT = 0.5


@register_model("two_stream")
def build_two_stream(cfg: ModelConfig) -> ActionModel:
    """Joint model of rgb and flow (Two-joint Stream)."""
    head = ClassifierHead(FEATURE_CHANNELS + cfg.mem_size, cfg.num_classes, JOINT_DROPOUT)
    return ActionModel({"flow": flow_stream(cfg), "rgb": rgb_stream(cfg)}, head)
