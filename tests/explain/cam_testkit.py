"""Helpers of the CAM tests: tiny models with their checkpoint metadata (not saved to disk)."""

from __future__ import annotations

from torch import nn

from fpar.config import ModelConfig
from fpar.data.transforms import NORMALIZATION
from fpar.models import CheckpointMeta, build_model, list_models

MODEL_NAMES = list_models()
CLASSES = ["take_cup", "put_cup", "shake_box"]


def tiny(name: str, image_size: int = 64, frames: int = 3, **options) -> tuple[nn.Module, CheckpointMeta]:
    """A random-weight model in eval mode and its meta: 64x64 input (layer4 2x2), N=3, L=2."""
    cfg = ModelConfig(name=name, num_classes=len(CLASSES), frames=frames, flow_stack=2, image_size=image_size,
                      mem_size=16, **options)
    return build_model(cfg).eval(), CheckpointMeta(cfg, list(CLASSES), NORMALIZATION)
