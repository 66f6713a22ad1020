"""`fpar demo --tiny` end to end, as a user runs it: every step's output exists, parses and is consistent.

The tiny demo runs every step of the full one (synth, prepare, data check, warm-up, the five
trainings with their shared stages, report, alpha search, CAM) at the smallest sizes; its
accuracies mean nothing, so nothing here checks them. The full demo's time is a measured figure in
the README, not a test.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from fpar.config import WarmupRecipe, load_recipe
from fpar.data.layout import (DEMO_CONTACT_SHEET_NAME, DEMO_SYNTH_DIR, LABELS_NAME, MANIFEST_NAME, PREPARED_DIR,
                              PREPARE_SETTINGS_NAME, QUALITY_NAME, discover)
from fpar.data.synthetic import TINY_CLASSES
from fpar.demo import CONFIGS
from fpar.pipeline import MODELS, relocate
from fpar.io.video import read_video
from fpar.models.backbone import load_resnet34
from fpar.models.checkpoints import load_model, read_checkpoint
from fpar.prepare.quality import IOU_TARGET, RESIDUAL_TARGET
from fpar.train.rundir import RunDir

STEPS = 12  # synth, prepare, check, warm-up, five trainings, report, search, CAM


def run_demo(out: Path, *more: str) -> subprocess.CompletedProcess:
    # A wide terminal, so rich does not shorten the paths the output is checked for.
    return subprocess.run([sys.executable, "-m", "fpar.cli", "demo", "--tiny", "--out", str(out), *more],
                          capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "400"})


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out)


@pytest.mark.slow
def test_demo_runs_and_writes_every_step(demo_out) -> None:
    out, result = demo_out
    assert result.returncode == 0, result.stdout + result.stderr
    for number in range(1, STEPS + 1):  # one line per step, with its time
        assert f"step {number} done" in result.stdout
    labels = (out / DEMO_SYNTH_DIR / LABELS_NAME).read_text().splitlines()
    assert labels[0] == "video,user,label"
    n_videos = len(labels) - 1
    with Image.open(out / DEMO_CONTACT_SHEET_NAME) as sheet:
        assert sheet.width > 200 and sheet.height > 200

    found = discover(out / PREPARED_DIR)
    assert found.layout.name == "course" and not found.problems
    assert len(found.samples) == n_videos
    assert {s.label for s in found.samples} == set(TINY_CLASSES)
    for sample in found.samples:
        assert sample.n_flows == sample.n_frames - 1
        assert len(sample.mmaps) == sample.n_frames


@pytest.mark.slow
def test_demo_reports_measured_quality(demo_out) -> None:
    out, result = demo_out
    quality = json.loads((out / PREPARED_DIR / QUALITY_NAME).read_text())  # as `fpar prepare --evaluate` writes
    assert quality["targets_met"] == (quality["residual_ratio"] <= RESIDUAL_TARGET and quality["iou"] >= IOU_TARGET)
    assert str(out / PREPARED_DIR / QUALITY_NAME) in " ".join(result.stdout.split())  # the table says where
    # the finished root holds what it should and nothing else: no lock, journal, work folder or temp file
    assert {p.name for p in (out / PREPARED_DIR).iterdir()} == {
        "processed_frames2", "flow_x_processed", "flow_y_processed", MANIFEST_NAME, PREPARE_SETTINGS_NAME, QUALITY_NAME}
    assert 0 <= quality["warp_residual"] < quality["plain_residual"]
    assert 0 < quality["iou"] <= 1


@pytest.mark.slow
def test_demo_warm_up_is_a_resnet34_that_never_saw_the_data_sets_users(demo_out) -> None:
    out, _ = demo_out
    net = load_resnet34(str(out / "warmup" / "backbone.pt"))  # loads as `model.weights: PATH` does
    classes = len(TINY_CLASSES)
    assert torch.all(net.fc.weight[classes:] == 0)  # rows beyond the classes can never be the attention's class
    assert net.fc.bias[classes:].max() < net.fc.bias[:classes].min()
    assert net.bn1.running_var.ne(1).any()  # BN statistics were learnt: the models keep BN in eval mode
    split = json.loads((out / "train" / "rgb" / "split.json").read_text())
    warm = load_recipe(out / "warmup" / "recipe.yaml", schema=WarmupRecipe)
    assert warm.train.seed == split["seed"] and warm.data.root == str((out / PREPARED_DIR).resolve())
    assert warm.corpus.users == 2  # --tiny's corpus
    header = (out / "warmup" / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,train_acc,check_acc,seconds"


@pytest.mark.slow
def test_demo_trains_five_models_with_shared_stages(demo_out) -> None:
    out, result = demo_out
    for name in MODELS:
        run = RunDir(out / "train" / name)
        model, meta = load_model(run.checkpoint("best"))
        assert meta.model_name == name and meta.class_names == sorted(TINY_CLASSES)
        with run.metrics.open() as handle:
            assert len(list(csv.DictReader(handle))) >= 1
        recipe = load_recipe(run.recipe)
        assert recipe.data.root == str((out / PREPARED_DIR).resolve())  # moved from runs/demo to --out
        assert recipe.model.weights == str(out / "warmup" / "backbone.pt")
    init = {name: load_recipe(RunDir(out / "train" / name).recipe).stages[0].init_from for name in MODELS}
    train = (out / "train").resolve()
    assert init["rgb_ms"] == [str(RunDir(train / "rgb").checkpoint("best", "stage1"))]
    assert init["rgb_ms_feedback"] == [str(RunDir(train / "rgb_ms").checkpoint("best"))]
    assert init["two_stream"] == [str(RunDir(train / n).checkpoint("best")) for n in ("rgb", "flow")]
    # rgb_ms starts from rgb stage 1: its backbone's conv1 is rgb's (stage 1 and 2 never train conv1)
    rgb = read_checkpoint(RunDir(out / "train" / "rgb").checkpoint("best", "stage1")).state_dict
    ms = read_checkpoint(RunDir(out / "train" / "rgb_ms").checkpoint("best")).state_dict
    key = "streams.rgb.backbone.conv1.weight"
    assert torch.equal(rgb[key], ms[key])
    assert f"init_from {RunDir(train / 'rgb').checkpoint('best', 'stage1')}" in " ".join(result.stdout.split())


@pytest.mark.slow
def test_demo_report_table_curves_and_cam(demo_out) -> None:
    out, result = demo_out
    with (out / "report" / "table.csv").open() as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    assert set(rows) == set(MODELS)
    for row in rows.values():
        assert 0 <= float(row["test_accuracy_mean"]) <= 100
        assert row["order_only_mean"] != "" and row["object_only_mean"] != ""  # pairs beside the overall accuracy
    table = (out / "report" / "table.md").read_text()
    assert "order-only pairs" in table and "object-only pairs" in table
    assert "order-only pairs" in result.stdout  # the table is printed in the terminal
    for png in ("curves.png", *(f"curves/{name}.png" for name in MODELS)):
        with Image.open(out / "report" / png) as image:
            assert image.width > 100
    frames = len(read_video(next((out / DEMO_SYNTH_DIR / "videos").glob("S2_take_cup_*.mp4"))))
    for video in ("rgb_ms_feedback.mp4", "compare.mp4"):
        assert len(read_video(out / "cam" / video)) == frames  # every frame of the clip has its map
    with Image.open(out / "cam" / "compare_sheet.png") as before_after, \
            Image.open(out / "cam" / "rgb_ms_feedback_sheet.png") as single:
        assert before_after.height > single.height  # two rows of models, one row
    assert str(out / "cam" / "compare_sheet.png") in " ".join(result.stdout.split())


@pytest.mark.slow
def test_demo_rerun_resumes_without_redoing(demo_out) -> None:
    out, first = demo_out
    assert first.returncode == 0
    best = {name: RunDir(out / "train" / name).checkpoint("best").read_bytes() for name in MODELS}
    again = run_demo(out)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 prepared" in again.stdout and "already complete" in again.stdout
    assert "warm-up already complete" in again.stdout
    assert again.stdout.count("resuming") >= len(MODELS)
    assert {name: RunDir(out / "train" / name).checkpoint("best").read_bytes() for name in MODELS} == best


def test_relocate_moves_only_the_recipes_demo_paths(tmp_path: Path) -> None:
    recipe = load_recipe(CONFIGS / "two_stream.yaml")
    places = {"runs/demo/prepared": tmp_path / "p", "runs/demo/warmup": tmp_path / "w",
              "runs/demo/train/rgb": tmp_path / "t" / "rgb" / "seed-1", "runs/demo/train/rgb_ms": tmp_path / "x"}
    recipe.stages[0].init_from += ["runs/demo/train/rgb:stage1", "runs/demo/train/rgb_msx", "elsewhere/run"]
    relocate(recipe, places)
    assert recipe.data.root == str(tmp_path / "p")
    assert recipe.model.weights == str(tmp_path / "w" / "backbone.pt")
    assert recipe.stages[0].init_from == [str(tmp_path / "t" / "rgb" / "seed-1"), "runs/demo/train/flow",
                                          f"{tmp_path / 't' / 'rgb' / 'seed-1'}:stage1", "runs/demo/train/rgb_msx",
                                          "elsewhere/run"]


@pytest.mark.parametrize(("options", "message"), [
    ({"configs": Path("no_such")}, "no_such/warmup.yaml: recipe not found"),
    ({"configs": CONFIGS.parent / "gtea61"}, "gtea61/warmup.yaml: recipe not found"),  # the real data's recipes
])
def test_demo_reads_every_recipe_before_its_first_step(tmp_path: Path, options: dict, message: str) -> None:
    from fpar.demo import run_demo as demo
    from fpar.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        demo(tmp_path / "out", tiny=True, **options)
    assert not (tmp_path / "out").exists()  # not even the synthetic videos
