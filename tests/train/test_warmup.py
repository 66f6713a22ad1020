"""The warm-up (the demo's stand-in for ImageNet): trains on frames of corpus users that the data set
does not have, never reads the data set's images, writes a ResNet-34 state dict that recipes load
as `model.weights`, and is not redone when complete."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from conftest import TINY
from fpar.config import CorpusConfig, WarmupRecipe, load_recipe
from fpar.data import datasets, images
from fpar.data.layout import class_names, discover
from fpar.data.synthetic.corpus import render_frames
from fpar.errors import ConfigError, FparError
from fpar.models.backbone import load_resnet34
from fpar.train import warmup

REPO = Path(__file__).resolve().parents[2]
WARMUP_YAML = """data:
  test_user: S2
corpus:
  users: 2
  check_users: 1
  clips_per_class: 1
  frames: 2
  width: 64
  height: 48
stages:
  - name: warmup
    trains: [all]
    epochs: 2
    bn: train
"""


def recipe_for(folder: Path, root: Path, *more: str) -> WarmupRecipe:
    path = folder / "warmup.yaml"
    path.write_text(WARMUP_YAML)
    return load_recipe(path, [*TINY[1:-1], f"data.root={root}", *more], WarmupRecipe)  # no model.mem_size


def test_warm_up_learns_from_corpus_users_and_never_reads_the_data_set(prepared_root: Path, tmp_path: Path,
                                                                       monkeypatch) -> None:
    rendered: list[list[str]] = []
    real_render = warmup.render_frames

    def spy(classes, users, *args, **kwargs):
        rendered.append(list(users))
        return real_render(classes, users, *args, **kwargs)

    def no_reading(path, *args, **kwargs):
        raise AssertionError(f"the warm-up read an image of the data set: {path}")

    monkeypatch.setattr(warmup, "render_frames", spy)
    monkeypatch.setattr(images, "read_image", no_reading)
    monkeypatch.setattr(datasets, "read_array", no_reading)
    recipe = recipe_for(tmp_path, prepared_root)
    target = warmup.warm_up(recipe, tmp_path / "w", Console(quiet=True))

    samples = discover(prepared_root).samples
    assert rendered == [["W01", "W02"], ["W03"]]  # training users, then the check user
    assert not {user for users in rendered for user in users} & {s.user for s in samples}
    net = load_resnet34(str(target))  # what `model.weights: PATH` does
    classes = len(class_names(samples, recipe.data.exclude_classes))
    assert torch.all(net.fc.weight[classes:] == 0)
    assert net.fc.bias[classes:].max() < net.fc.bias[:classes].min()  # never the attention's arg max
    assert net.bn1.running_mean.ne(0).any()  # BN statistics learnt on the frames
    lines = (tmp_path / "w" / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,train_acc,check_acc,seconds" and len(lines) == 3
    check = [float(line.split(",")[3]) for line in lines[1:]]
    assert all(0 <= value <= 1 for value in check)


def test_corpus_frames_are_deterministic_and_labelled_by_class() -> None:
    classes = ["take_cup", "shake_box"]
    frames = render_frames(classes, ["W01", "W02"], 2, 3, (64, 48), seed=5, desc="test")
    assert frames.images.shape == (2 * 2 * 2 * 3, 48, 64, 3) and frames.images.dtype == np.uint8
    assert frames.labels.tolist() == ([0] * 6 + [1] * 6) * 2  # user by user, class by class, clip by clip
    again = render_frames(classes, ["W01", "W02"], 2, 3, (64, 48), seed=5, desc="test")
    assert np.array_equal(frames.images, again.images)
    other_seed = render_frames(classes, ["W01", "W02"], 2, 3, (64, 48), seed=6, desc="test")
    assert not np.array_equal(frames.images, other_seed.images)
    with pytest.raises(FparError, match="open_jam"):
        render_frames(["open_jam"], ["W01"], 1, 1, (64, 48), seed=5)


def test_corpus_refuses_a_class_it_cannot_draw_and_users_of_the_data_set() -> None:
    with pytest.raises(ConfigError, match="take_bread.*fpar synth"):
        warmup._corpus(CorpusConfig(users=1, check_users=1, clips_per_class=1, frames=1, width=64, height=48),
                       ["take_bread"], {"S1"})
    with pytest.raises(ConfigError, match="W01"):
        warmup._corpus(CorpusConfig(users=1), ["take_cup"], {"W01", "S2"})
    with pytest.raises(ConfigError, match="users"):
        warmup._corpus(CorpusConfig(users=0), ["take_cup"], {"S1"})


def test_warm_up_recipe_needs_its_schema() -> None:
    demo = REPO / "configs" / "demo" / "warmup.yaml"
    assert load_recipe(demo, schema=WarmupRecipe).corpus.users == 24
    with pytest.raises(ConfigError, match="corpus"):
        load_recipe(demo)  # a model recipe has no corpus section
    with pytest.raises(ConfigError, match="schema=WarmupRecipe"):
        warmup.warm_up(load_recipe(REPO / "configs" / "demo" / "rgb.yaml"), Path("unused"), Console(quiet=True))


def test_warm_up_is_not_redone_and_refuses_another_recipe(prepared_root: Path, tmp_path: Path) -> None:
    recipe = recipe_for(tmp_path, prepared_root, "stages.0.epochs=1")
    target = warmup.warm_up(recipe, tmp_path / "w", Console(quiet=True))
    before = target.read_bytes()
    console = Console(record=True, width=300)
    warmup.warm_up(recipe_for(tmp_path, prepared_root, "stages.0.epochs=1"), tmp_path / "w", console)
    assert "warm-up already complete" in console.export_text()
    assert target.read_bytes() == before
    with pytest.raises(ConfigError, match="another recipe"):
        warmup.warm_up(recipe_for(tmp_path, prepared_root, "stages.0.epochs=1", "corpus.seed=3"), tmp_path / "w",
                       Console(quiet=True))
