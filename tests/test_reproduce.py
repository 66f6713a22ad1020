"""`fpar reproduce`: raw videos (or a prepared root) -> the five models -> table, curves, CAM.

The end-to-end tests run the real command on the tiny synthetic videos through configs/gtea61 (the
reference recipes), shrunk by overrides and `--epochs 1`; the others check, without training, how
the pipeline moves the recipes into its folder and what it refuses before the long steps.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fpar import reproduce as reproduce_module
from fpar.config import load_recipe
from fpar.data.layout import discover
from fpar.errors import ConfigError, DataError
from fpar.io.video import read_video
from fpar.pipeline import MODELS, Pipeline
from fpar.reproduce import (CONFIGS, DATA_KEY, OPTIONS_NAME, RUNS_KEY, checked_weights, held_out_clip,
                            record_options, run_reproduce)
from fpar.train.rundir import RunDir

DEMO_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "demo"
TINY = ["data.frames=3", "data.flow_stack=2", "data.image_size=48", "data.batch_size=4", "data.workers=0",
        "model.mem_size=8"]
STEPS = 9  # prepare, check, five trainings, report, CAM


def reproduce(out: Path, *more: str) -> subprocess.CompletedProcess:
    # A wide terminal, so rich does not shorten the paths the output is checked for.
    return subprocess.run([sys.executable, "-m", "fpar.cli", "reproduce", "--out", str(out), "--weights", "none",
                           "--epochs", "1", *more, *TINY], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "COLUMNS": "400"})


@pytest.fixture(scope="module")
def reproduced(synth_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("reproduce")
    return out, reproduce(out, "--videos", str(synth_raw / "labels.csv"), "--size", "64x48")


def _pipeline(tmp_path: Path, **options) -> Pipeline:
    return Pipeline(out=tmp_path / "out", configs=options.pop("configs", CONFIGS), data_key=DATA_KEY,
                    runs_key=RUNS_KEY, root=tmp_path / "root", **options)


@pytest.mark.slow
def test_reproduce_goes_from_raw_videos_to_table_curves_and_cam(reproduced) -> None:
    out, result = reproduced
    assert result.returncode == 0, result.stdout + result.stderr
    for number in range(1, STEPS + 1):
        assert f"step {number} done" in result.stdout
    found = discover(out / "prepared")
    assert found.layout.name == "course" and not found.problems and len(found.samples) == 32
    for name in MODELS:
        run = RunDir(out / "train" / name)
        assert run.checkpoint("best").is_file()
        assert load_recipe(run.recipe).data.root == str(out / "prepared")  # the recipes read the prepared root
    feedback = load_recipe(RunDir(out / "train" / "rgb_ms_feedback").recipe)
    assert feedback.stages[0].init_from == [str(out / "train" / "rgb_ms" / "best.pt")]  # stages shared
    table = (out / "report" / "table.md").read_text()
    assert all(f"| {name} " in table for name in MODELS)
    assert (out / "report" / "curves.png").stat().st_size > 10_000
    [clip] = (out / "cam").glob("clip_S2_*.mp4")  # the held-out user of configs/gtea61
    assert len(read_video(clip)) == 16  # every frame of the tiny synthetic sample
    assert len(read_video(out / "cam" / "rgb_ms_feedback.mp4")) == 16
    assert (out / "cam" / "compare_sheet.png").is_file()
    assert json.loads((out / OPTIONS_NAME).read_text())["epochs"] == 1
    assert str(out / "report" / "table.md") in " ".join(result.stdout.split())


@pytest.mark.slow
def test_reproduce_resumes_refuses_other_options_and_reads_a_prepared_root(reproduced, synth_raw: Path,
                                                                           tmp_path: Path) -> None:
    out, first = reproduced
    assert first.returncode == 0
    best = {name: RunDir(out / "train" / name).checkpoint("best").read_bytes() for name in MODELS}
    again = reproduce(out, "--videos", str(synth_raw / "labels.csv"), "--size", "64x48")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "32 already complete" in again.stdout and again.stdout.count("resuming") == len(MODELS)
    assert {name: RunDir(out / "train" / name).checkpoint("best").read_bytes() for name in MODELS} == best

    other = reproduce(out, "--videos", str(synth_raw / "labels.csv"), "--size", "64x48", "--epochs", "2")
    assert other.returncode == 1 and "Traceback" not in other.stdout + other.stderr
    assert "started with other options (epochs differ)" in " ".join(other.stdout.split())

    from_root = reproduce(tmp_path / "from_root", "--root", str(out / "prepared"))
    assert from_root.returncode == 0, from_root.stdout + from_root.stderr
    assert "fpar prepare" not in from_root.stdout and f"step {STEPS - 1} done" in from_root.stdout
    assert not (tmp_path / "from_root" / "prepared").exists()
    assert (tmp_path / "from_root" / "report" / "table.md").is_file()


def test_pipeline_moves_the_gtea61_recipes_into_its_folder(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, weights="none", epochs=30)
    rgb = pipeline.recipe("rgb.yaml", 0)
    assert rgb.data.root == str(tmp_path / "root")
    assert rgb.model.weights == "none"  # the recipe's imagenet, replaced
    assert [s.epochs for s in rgb.stages] == [30, 30]
    assert [s.milestones for s in rgb.stages] == [[25], [25]]  # milestones past the cap dropped
    feedback = pipeline.recipe("rgb_ms_feedback.yaml", 0)
    assert feedback.stages[0].init_from == [str(tmp_path / "out" / "train" / "rgb_ms")]
    rgb_ms = pipeline.recipe("rgb_ms.yaml", 0)
    assert rgb_ms.stages[0].init_from == [str(tmp_path / "out" / "train" / "rgb") + ":stage1"]
    two_stream = pipeline.recipe("two_stream.yaml", 0)
    assert two_stream.stages[0].init_from == [str(tmp_path / "out" / "train" / name) for name in ("rgb", "flow")]
    as_written = _pipeline(tmp_path).recipe("rgb.yaml", 0)
    assert as_written.model.weights == "imagenet" and as_written.stages[0].epochs == 300


def test_pipeline_refuses_recipes_that_would_read_outside_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.root runs/demo/prepared is not this run's data"):
        _pipeline(tmp_path, configs=DEMO_CONFIGS).recipe("rgb.yaml", 0)  # named as configs/demo names them
    with pytest.raises(ConfigError, match="data.root /elsewhere is not this run's data"):
        _pipeline(tmp_path, overrides=["data.root=/elsewhere"]).recipe("rgb.yaml", 0)
    with pytest.raises(ConfigError, match="stage stage3 starts from /x/rgb_ms, not from one of this run's models"):
        _pipeline(tmp_path, overrides=["stages.0.init_from=[/x/rgb_ms]"]).recipe("rgb_ms_feedback.yaml", 0)


@pytest.mark.parametrize(("options", "message"), [
    ({}, "give --videos (raw videos to prepare) or --root"),
    ({"videos": Path("v"), "root": Path("r")}, "give --videos (raw videos to prepare) or --root"),
    ({"root": Path("r"), "labels": Path("l")}, "--labels, --size, --flow and --workers go with --videos"),
    ({"root": Path("r"), "workers": 2}, "--labels, --size, --flow and --workers go with --videos"),
    ({"root": Path("r"), "epochs": 0}, "--epochs 0: train each stage at least one epoch"),
    ({"root": Path("r"), "seeds": 0}, "--seeds 0: train each model at least once"),
    ({"root": Path("r"), "overrides": ["train.seed=3"]}, "train.seed=: give the training seed with --seed"),
    ({"root": Path("r"), "weights": "no_such.pth"}, "--weights no_such.pth: no such file"),
    ({"root": Path("r"), "weights": "none", "overrides": ["data.test_user=all"]}, "data.test_user=all: fpar reproduce"),
    ({"root": Path("r"), "configs": Path("no_such")}, "no_such/rgb.yaml: recipe not found"),
    ({"root": Path("r"), "overrides": ["data.no_such_key=1"]}, "data.no_such_key"),
])
def test_reproduce_refuses_bad_options_before_any_work(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        run_reproduce(tmp_path / "out", **options)
    assert message in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_reproduce_refuses_a_test_user_the_data_lacks_before_the_long_steps(synth_raw: Path, prepared_root: Path,
                                                                           tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"labels.csv: no video of test user S9 \(users: S1, S2, S3, S4\)"):
        run_reproduce(tmp_path / "raw", videos=synth_raw / "labels.csv", weights="none",
                      overrides=["data.test_user=S9"])
    assert not (tmp_path / "raw").exists()  # refused before prepare
    with pytest.raises(DataError, match="no sample of test user S9 to hold out"):
        run_reproduce(tmp_path / "root", root=prepared_root, weights="none", overrides=["data.test_user=S9", *TINY])
    assert not (tmp_path / "root" / "train").exists() and not (tmp_path / "root" / OPTIONS_NAME).exists()


@pytest.mark.parametrize("given", ["root", "videos"])
def test_a_missing_input_is_named_before_the_backbone_weights_are_fetched(tmp_path: Path, given: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # offline, the ImageNet download would fail first and never say that the input path was wrong
    import fpar.reproduce as reproduce

    fetched = []
    monkeypatch.setattr(reproduce, "load_resnet34", fetched.append)
    with pytest.raises(DataError, match=str(tmp_path / "no_such")):
        run_reproduce(tmp_path / "out", **{given: tmp_path / "no_such"})
    assert fetched == []


def test_weights_file_is_made_absolute_for_the_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "resnet34.pth").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert checked_weights("resnet34.pth") == str(tmp_path / "resnet34.pth")
    assert checked_weights("imagenet") == "imagenet" and checked_weights(None) is None


def test_options_are_recorded_once_and_a_rerun_with_others_refused(tmp_path: Path) -> None:
    path = tmp_path / OPTIONS_NAME
    record_options(path, {"epochs": 1, "overrides": ["train.device=cpu"]})
    record_options(path, {"epochs": 1, "overrides": ["train.device=cpu"]})  # the same: resumes
    with pytest.raises(ConfigError, match=r"other options \(epochs, overrides differ\)"):
        record_options(path, {"epochs": None, "overrides": []})
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="reproduce.json: unreadable"):
        record_options(path, {"epochs": 1})


def test_held_out_clip_is_the_first_sample_capped_and_refuses_a_resized_frame(
        prepared_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = shutil.copytree(prepared_root, tmp_path / "root")
    pipeline = Pipeline(out=tmp_path / "out", configs=CONFIGS, data_key=DATA_KEY, runs_key=RUNS_KEY, root=root)
    monkeypatch.setattr(reproduce_module, "MAX_FRAMES", 5)
    clip = held_out_clip(pipeline, "S2", "auto")
    first = min((s for s in discover(root).samples if s.user == "S2"), key=lambda s: (s.label, s.instance))
    assert clip.name == f"clip_S2_{first.label}_{first.instance}.mp4"
    assert read_video(clip).shape == (5, 48, 64, 3)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(first.frames[2])
    with pytest.raises(DataError, match=r"30x20, but its sample's first frame is 64x48"):
        held_out_clip(pipeline, "S2", "auto")


@pytest.mark.parametrize("seeds", [[0], [3, 4]])
def test_pipeline_trains_each_model_once_per_seed_into_a_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               seeds: list[int]) -> None:
    """The pipeline's training order, seeds and folders (shared with `fpar demo --seeds`), without training."""
    import fpar.pipeline as pipeline_module

    trained: list[tuple[str, int, Path]] = []
    monkeypatch.setattr(pipeline_module, "make_plan", lambda recipe: recipe)
    monkeypatch.setattr(pipeline_module, "train_run",
                        lambda recipe, out, console: trained.append((recipe.model.name, recipe.train.seed, out)))
    pipeline = _pipeline(tmp_path, weights="none", seeds=seeds)
    pipeline.train_models()
    train = tmp_path / "out" / "train"
    if len(seeds) == 1:
        assert trained == [(name, 0, train / name) for name in MODELS]
        assert not any(RunDir(train / name).group.exists() for name in MODELS)
    else:
        assert trained == [(name, s, train / name / f"seed-{s}") for name in MODELS for s in seeds]
        for name in MODELS:
            group = json.loads(RunDir(train / name).group.read_text())
            assert group == {"kind": "seeds", "runs": ["seed-3", "seed-4"]}
        # each seed's recipes start from the same seed's earlier runs
        assert _pipeline(tmp_path, seeds=seeds).recipe("rgb_ms_feedback.yaml", 4).stages[0].init_from == [
            str(train / "rgb_ms" / "seed-4")]
