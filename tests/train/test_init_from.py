"""`init_from` loads what fits, but never part of a classifier: a new head starts fresh."""

from __future__ import annotations

from pathlib import Path

import torch

from fpar.config import ModelConfig
from fpar.data.transforms import NORMALIZATION
from fpar.models import CheckpointMeta, build_model, save_checkpoint
from fpar.train.init_from import load_source, read_source

CLASSES = ["a", "b", "c"]


def _saved(path: Path, name: str) -> dict[str, torch.Tensor]:
    cfg = ModelConfig(name=name, num_classes=3, frames=2, flow_stack=2, image_size=64, mem_size=16)
    model = build_model(cfg)
    with torch.no_grad():
        model.classifier.fc.bias.fill_(7.0)  # a trained bias, distinct from any fresh one
    save_checkpoint(path, model, CheckpointMeta(cfg, CLASSES, NORMALIZATION))
    return model.state_dict()


def test_a_classifier_of_another_size_is_not_loaded_even_where_its_bias_fits(tmp_path: Path) -> None:
    # two_stream's joint fc has 1024 inputs, an rgb run's 16 here: same classes, so the biases
    # alone have the same shape; Ego-RNN's joint model starts a fresh nn.Linear
    rgb = _saved(tmp_path / "rgb.pt", "rgb")
    joint = build_model(ModelConfig(name="two_stream", num_classes=3, frames=2, flow_stack=2, image_size=64,
                                    mem_size=16))
    fresh = joint.classifier.fc.bias.detach().clone()
    source = read_source(str(tmp_path / "rgb.pt"), joint, CLASSES)
    assert not any(k.startswith("classifier.") for k in source.state)
    line = load_source(joint, source)
    assert line.endswith("; classifier not loaded (another size; this model's is new)"), line
    assert torch.equal(joint.classifier.fc.bias, fresh)
    assert torch.equal(joint.streams.rgb.lstm.x_convs.i.weight, rgb["streams.rgb.lstm.x_convs.i.weight"])


def test_a_classifier_that_fits_whole_is_loaded(tmp_path: Path) -> None:
    _saved(tmp_path / "rgb.pt", "rgb")
    rgb_ms = build_model(ModelConfig(name="rgb_ms", num_classes=3, frames=2, flow_stack=2, image_size=64, mem_size=16))
    line = load_source(rgb_ms, read_source(str(tmp_path / "rgb.pt"), rgb_ms, CLASSES))
    assert "classifier not loaded" not in line and torch.all(rgb_ms.classifier.fc.bias == 7.0)
