"""Helpers of the model tests: small configs and batches (most tests run at 64x64, layer4 2x2, T=2),
and a pickle payload that runs code.

A plainly named module (not conftest) so that `from model_testkit import ...` never meets
another test folder's conftest."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from fpar.config import ModelConfig
from fpar.models import list_models
from fpar.models.backbone import layer4_side

MODEL_NAMES = list_models()
NUM_CLASSES = 5


def small_config(name: str, image_size: int = 64, frames: int = 2, **options) -> ModelConfig:
    """A model config for fast tests: few classes, short clips, small frames, L = 2."""
    return ModelConfig(name=name, num_classes=NUM_CLASSES, frames=frames, flow_stack=2, image_size=image_size, **options)


def make_batch(cfg: ModelConfig, batch: int = 2, seed: int = 0) -> dict:
    """A batch dict as the data layer gives it (DESIGN section 8), motion maps at layer4's side."""
    g = torch.Generator().manual_seed(seed)
    size, side = cfg.image_size, layer4_side(cfg.image_size)
    return {
        "rgb": torch.randn(batch, cfg.frames, 3, size, size, generator=g),
        "flow": torch.randn(batch, 2 * cfg.flow_stack, size, size, generator=g),
        "mmaps": torch.randint(0, 2, (batch, cfg.frames, side, side), generator=g),
        "label": torch.randint(0, cfg.num_classes, (batch,), generator=g),
        "sample_id": [f"S1/take_cup/{seed}_{i}" for i in range(batch)],
    }


class RunsCode:
    """A pickle payload: unpickling it calls os.mkdir(marker), proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.mkdir, (str(self.marker),)
