"""`fpar train` end to end on the tiny prepared root: the run dir, frozen means frozen, init_from."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from conftest import TINY, stage_yaml, write_recipe
from fpar.config import load_recipe
from fpar.errors import ConfigError
from fpar.models import load_model, read_checkpoint
from fpar.train.rundir import METRICS_COLUMNS, RunDir
from fpar.train.run import train
from fpar.train.stages import select

STAGE2 = ["lstm", "classifier", "layer4_convs", "backbone_fc"]


def overrides(root: Path, *more: str) -> list[str]:
    return [*TINY, f"data.root={root}", *more]


@pytest.fixture(scope="module")
def rgb_run(prepared_root: Path, tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """An rgb run of two stages: s1 (ConvLSTM + classifier, 2 epochs), s2 (+ layer4 convs, fc, 1 epoch)."""
    folder = tmp_path_factory.mktemp("rgb")
    recipe = write_recipe(folder, "rgb", [stage_yaml("s1", ["lstm", "classifier"], 2),
                                          stage_yaml("s2", STAGE2, 1, "    lr: 1.0e-2\n")])
    train(recipe, folder / "run", overrides(prepared_root))
    return RunDir(folder / "run")


def rows(run: RunDir) -> list[dict[str, str]]:
    with run.metrics.open() as handle:
        return list(csv.DictReader(handle))


def test_run_dir_holds_the_contract(rgb_run: RunDir, prepared_root: Path) -> None:
    recipe = load_recipe(rgb_run.recipe)
    assert recipe.model.num_classes == 4 and recipe.data.root == str(prepared_root.resolve())
    split = json.loads(rgb_run.split.read_text())
    assert split["test_user"] == "S2" and split["selection"] == "val" and split["seed"] == 0
    assert len(split["classes"]) == 4 and not set(split["train"]) & set(split["val"])
    assert split["test"] and all(i.startswith("S2/") for i in split["test"])
    assert not any(i.startswith("S2/") for i in split["train"] + split["val"])  # val never the test user
    table = rows(rgb_run)
    assert tuple(table[0]) == METRICS_COLUMNS
    assert [(r["stage"], r["epoch"]) for r in table] == [("s1", "1"), ("s1", "2"), ("s2", "1")]
    assert all(r["train_loss_ms"] == "" and float(r["train_loss"]) == float(r["train_loss_cls"]) for r in table)
    assert float(table[2]["lr"]) == 1e-2
    assert any(rgb_run.tensorboard.glob("events.out.tfevents.*"))
    assert not rgb_run.warnings.exists()  # every test class was seen in training


def test_checkpoints_rebuild_alone_and_best_is_best_of_last_stage(rgb_run: RunDir) -> None:
    model, meta = load_model(rgb_run.checkpoint("best"))
    assert meta.model_name == "rgb" and meta.frames == 3 and meta.image_size == 48 and "rgb" in meta.normalization
    best = read_checkpoint(rgb_run.checkpoint("best")).extra
    assert best == {"stage": "s2", "epoch": 1, "val_acc": float(rows(rgb_run)[2]["val_acc"]),
                    "test_user": "S2", "selection": "val"}
    s1 = [float(r["val_acc"]) for r in rows(rgb_run)[:2]]
    s1_best = read_checkpoint(rgb_run.checkpoint("best", "s1")).extra
    assert s1_best["val_acc"] == max(s1) and s1_best["epoch"] == 1 + s1.index(max(s1))
    assert read_checkpoint(rgb_run.checkpoint("last", "s1")).extra["epoch"] == 2
    assert all(rgb_run.checkpoint(w, s).is_file() for w in ("best", "last") for s in ("s1", "s2"))


def test_frozen_means_frozen(rgb_run: RunDir) -> None:
    """Stage s2 starts from s1's best; what s2 does not train, and every BN statistic, is unchanged."""
    start = read_checkpoint(rgb_run.checkpoint("best", "s1")).state_dict
    end = read_checkpoint(rgb_run.checkpoint("last", "s2")).state_dict
    model, _ = load_model(rgb_run.checkpoint("last", "s2"))
    trained = set(select(model, STAGE2, "s2"))
    changed = {k for k in start if not torch.equal(start[k], end[k])}
    assert changed and changed <= trained  # something trained, nothing else moved
    assert "streams.rgb.backbone.layer4.0.conv1.weight" in changed
    assert any("running_mean" in k for k in start) and not any("running" in k or "num_batches" in k for k in changed)


def test_another_recipe_in_the_run_dir_is_refused(rgb_run: RunDir, prepared_root: Path) -> None:
    before = rgb_run.recipe.read_text(), rgb_run.metrics.read_text()
    recipe = rgb_run.root.parent / "recipe.yaml"
    with pytest.raises(ConfigError, match=r"recipe.yaml: this run dir holds another recipe .*train.alpha"):
        train(recipe, rgb_run.root, overrides(prepared_root, "train.alpha=0.5"))
    # the same recipe again (on a machine with other cores: config.MACHINE_KEYS may differ), or
    # --resume, continues the finished run: nothing is redone
    train(recipe, rgb_run.root, overrides(prepared_root))
    train(recipe, rgb_run.root, overrides(prepared_root, "data.workers=1", "data.frame_cache=off"))
    train(None, None, resume=rgb_run.root)
    assert (rgb_run.recipe.read_text(), rgb_run.metrics.read_text()) == before


def test_init_from_a_stage_of_another_run(rgb_run: RunDir, prepared_root: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """rgb_ms from rgb stage 1: backbone and ConvLSTM load, the MS head is reported missing."""
    recipe = write_recipe(tmp_path, "rgb_ms", [stage_yaml("ms", ["ms_head", "classifier"], 1,
                                                          f"    init_from: ['{rgb_run.root}:s1']\n")])
    from rich.console import Console

    train(recipe, tmp_path / "run", overrides(prepared_root), console=Console(width=400))
    printed = capsys.readouterr().out
    assert "init_from" in printed and "missing streams.rgb.ms_head.* (4)" in printed
    source = read_checkpoint(rgb_run.checkpoint("best", "s1")).state_dict
    end = read_checkpoint(RunDir(tmp_path / "run").checkpoint("last")).state_dict
    frozen = [k for k in source if k.startswith(("streams.rgb.backbone.", "streams.rgb.lstm."))]
    assert frozen and all(torch.equal(source[k], end[k]) for k in frozen)  # loaded, and not trained here
    table = rows(RunDir(tmp_path / "run"))
    assert table[0]["train_loss_ms"] != "" and float(table[0]["train_loss_ms"]) > 0


def test_two_stream_from_an_rgb_and_a_flow_run(rgb_run: RunDir, prepared_root: Path, tmp_path: Path) -> None:
    flow = write_recipe(tmp_path, "flow", [stage_yaml("flow", ["all"], 1, "    optimizer: sgd\n    bn: train\n")],
                        name="flow.yaml")
    train(flow, tmp_path / "flow", overrides(prepared_root))
    joint = write_recipe(tmp_path, "two_stream", [stage_yaml(
        "joint", ["classifier", "rgb:lstm", "rgb:layer4_convs"], 1,
        f"    init_from: ['{rgb_run.root}', '{tmp_path / 'flow'}']\n    group_lr: {{'flow:layer4': 1.0e-4}}\n"
        "    optimizer: sgd\n    schedule: exponential\n    gamma: 0.99\n    bn: train\n")], name="joint.yaml")
    train(joint, tmp_path / "joint", overrides(prepared_root))
    end = read_checkpoint(RunDir(tmp_path / "joint").checkpoint("last")).state_dict
    for run, stream in ((rgb_run, "rgb"), (RunDir(tmp_path / "flow"), "flow")):
        start = read_checkpoint(run.checkpoint("best")).state_dict
        frozen = [k for k in start if k.startswith(f"streams.{stream}.backbone.layer1.")]
        assert frozen and all(torch.equal(start[k], end[k]) for k in frozen)  # loaded, then frozen
    model, meta = load_model(RunDir(tmp_path / "joint").checkpoint("best"))
    assert meta.model_name == "two_stream" and set(meta.normalization) == {"rgb", "flow"}


def test_feedback_model_from_an_rgb_ms_run(rgb_run: RunDir, prepared_root: Path, tmp_path: Path) -> None:
    ms = write_recipe(tmp_path, "rgb_ms", [stage_yaml("ms", ["ms_head"], 1, f"    init_from: ['{rgb_run.root}:s1']\n")],
                      name="ms.yaml")
    train(ms, tmp_path / "ms", overrides(prepared_root))
    feedback = write_recipe(tmp_path, "rgb_ms_feedback", [stage_yaml(
        "s3", ["feedback", "conv1", "ms_head"], 1, f"    init_from: ['{tmp_path / 'ms'}']\n    lr: 1.0e-2\n")],
        name="feedback.yaml")
    train(feedback, tmp_path / "feedback", overrides(prepared_root))
    start = read_checkpoint(RunDir(tmp_path / "ms").checkpoint("best")).state_dict
    end = read_checkpoint(RunDir(tmp_path / "feedback").checkpoint("last")).state_dict
    assert not torch.equal(start["streams.rgb.backbone.conv1.weight"], end["streams.rgb.backbone.conv1.weight"])
    assert not torch.equal(start["streams.rgb.ms_head.fc.weight"], end["streams.rgb.ms_head.fc.weight"])
    stats = [k for k in start if "running_" in k]
    assert stats and all(torch.equal(start[k], end[k]) for k in stats)  # BN kept in eval mode
    assert end["streams.rgb.feedback.gamma.2.weight"].abs().sum() > 0  # the zero-initialised conv learned


def test_a_pass_that_raises_ends_the_loader_workers(prepared_root: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An error in the middle of a pass propagates, and the run's loader workers end with it
    (they are ended by the trainer, not left alive by the traceback's frames)."""
    import multiprocessing

    import fpar.train.loop

    real, calls = fpar.train.loop.compute_losses, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise FloatingPointError("a NaN, say")
        return real(*args, **kwargs)

    monkeypatch.setattr(fpar.train.loop, "compute_losses", failing)
    recipe = write_recipe(tmp_path, "rgb", [stage_yaml("s1", ["lstm", "classifier"], 2)])
    with pytest.raises(FloatingPointError) as raised:
        train(recipe, tmp_path / "run", overrides(prepared_root, "data.workers=1"))
    assert raised.traceback  # the frames are still referenced here
    assert not multiprocessing.active_children()
