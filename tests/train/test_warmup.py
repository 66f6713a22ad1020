"""The warm-up (the demo's stand-in for ImageNet): trains on the training part only, writes a
ResNet-34 state dict that recipes load as `model.weights`, and is not redone when complete."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rich.console import Console

from conftest import TINY
from fpar.config import load_recipe
from fpar.data.layout import discover, split_by_user
from fpar.errors import ConfigError
from fpar.models.backbone import load_resnet34
from fpar.train import warmup

WARMUP_YAML = """data:
  test_user: S2
  frames: 2
stages:
  - name: warmup
    trains: [all]
    epochs: 1
    bn: train
"""


def recipe_for(folder: Path, root: Path, *more: str):
    path = folder / "warmup.yaml"
    path.write_text(WARMUP_YAML)
    return load_recipe(path, [*TINY[1:-1], "data.frames=2", f"data.root={root}", *more])  # no model.mem_size


def test_warm_up_trains_on_the_training_part_only(prepared_root: Path, tmp_path: Path, monkeypatch) -> None:
    seen = []
    real = warmup.make_dataset

    def spy(samples, *args, **kwargs):
        seen.extend(samples)
        return real(samples, *args, **kwargs)

    monkeypatch.setattr(warmup, "make_dataset", spy)
    recipe = recipe_for(tmp_path, prepared_root)
    target = warmup.warm_up(recipe, tmp_path / "w", Console(quiet=True))
    split = split_by_user(discover(prepared_root).samples, "S2", recipe.data.val_fraction, "val", 0)
    assert seen and {s.id for s in seen} == {s.id for s in split.train}  # not the validation part, not S2
    assert all(s.user != "S2" for s in seen)

    net = load_resnet34(str(target))  # what `model.weights: PATH` does
    classes = len({s.label for s in split.train})
    assert torch.all(net.fc.weight[classes:] == 0)
    assert net.fc.bias[classes:].max() < net.fc.bias[:classes].min()  # never the attention's arg max
    assert net.bn1.running_mean.ne(0).any()  # BN statistics learnt on the frames
    assert (tmp_path / "w" / "metrics.csv").read_text().startswith("epoch,train_loss,train_acc,seconds")


def test_warm_up_is_not_redone_and_refuses_another_recipe(prepared_root: Path, tmp_path: Path) -> None:
    recipe = recipe_for(tmp_path, prepared_root)
    target = warmup.warm_up(recipe, tmp_path / "w", Console(quiet=True))
    before = target.read_bytes()
    console = Console(record=True, width=300)
    warmup.warm_up(recipe_for(tmp_path, prepared_root), tmp_path / "w", console)
    assert "warm-up already complete" in console.export_text()
    assert target.read_bytes() == before
    with pytest.raises(ConfigError, match="another recipe"):
        warmup.warm_up(recipe_for(tmp_path, prepared_root, "train.seed=3"), tmp_path / "w", Console(quiet=True))
