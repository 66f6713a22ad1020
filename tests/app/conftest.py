"""Fixtures of the app tests: a runs folder with two tiny random-weight checkpoints (the `video` comes from
tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fpar.config import ModelConfig
from fpar.data.transforms import NORMALIZATION
from fpar.evaluate.outputs import METRICS_JSON
from fpar.models import CheckpointMeta, build_model, save_checkpoint
from fpar.train.rundir import RunDir

APP_MODELS = ("rgb", "rgb_ms")


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/<model>/best.pt for rgb and rgb_ms (64x64, N=3, 3 classes); rgb has a test accuracy."""
    root = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    for name in APP_MODELS:
        cfg = ModelConfig(name=name, num_classes=3, frames=3, flow_stack=2, image_size=64, mem_size=16)
        save_checkpoint(RunDir(root / name).checkpoint("best"), build_model(cfg),
                        CheckpointMeta(cfg, ["take_cup", "put_cup", "shake_box"], NORMALIZATION))
    metrics = RunDir(root / "rgb").eval_dir("best", "test") / METRICS_JSON
    metrics.parent.mkdir(parents=True)
    metrics.write_text(json.dumps({"accuracy": 0.565}))
    return root
