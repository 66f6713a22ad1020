"""Bad inputs: one-line errors naming the file, and nothing written; a warning for unseen test classes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY, stage_yaml, write_recipe
from rich.console import Console

from fpar.config import ModelConfig, load_recipe
from fpar.errors import CheckpointError, ConfigError, DataError
from fpar.models import CheckpointMeta, build_model, save_checkpoint
from fpar.train.distributed import Processes
from fpar.train.rundir import RunDir
from fpar.train.run import make_plan, train, train_run

ONE_STAGE = [stage_yaml("s1", ["classifier"], 1)]


def linked_root(source: Path, target: Path, keep=lambda user, label: True, rgb_only: bool = False) -> Path:
    """A root of symlinks to `source`'s instance folders: those `keep` accepts; frames alone if `rgb_only`."""
    for top in ["processed_frames2"] if rgb_only else ["processed_frames2", "flow_x_processed", "flow_y_processed"]:
        for instance in sorted((source / top).glob("*/*/*")):
            user, label = instance.parts[-3], instance.parts[-2]
            if keep(user, label):
                link = target / instance.relative_to(source)
                link.parent.mkdir(parents=True, exist_ok=True)
                if rgb_only:
                    link.mkdir()
                    (link / "rgb").symlink_to(instance / "rgb")
                else:
                    link.symlink_to(instance)
    return target


@pytest.mark.parametrize("model, what", [("flow", "reads warp flow"), ("rgb_ms", "learns from motion maps")])
def test_model_that_does_not_fit_the_data(prepared_root: Path, tmp_path: Path, model: str, what: str) -> None:
    root = linked_root(prepared_root, tmp_path / "root", rgb_only=True)
    recipe = write_recipe(tmp_path, model, ONE_STAGE)
    with pytest.raises(DataError, match=f"{root}.*{what}"):
        train(recipe, tmp_path / "run", [*TINY, f"data.root={root}"])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, message", [
    ("stages.0.lr=-1.0", "stage 's1': learning rates must be >= 0, got -1.0"),
    ("stages.0.eps=-1.0", "stage 's1': Invalid epsilon value: -1.0"),
    ("stages.0.group_lr={classifier: -0.5}", "stage 's1': learning rates must be >= 0, got -0.5"),
    ("stages.0.gamma=0", "stage 's1': gamma must be > 0 (the LR is multiplied by it), got 0.0"),
    ("data.batch_size=0", "data.batch_size must be at least 1, got 0"),
    ("data.workers=-1", "data.workers must be at least 0, got -1"),
    ("train.seed=-1", "train.seed must be from 0 to 4294967295, got -1"),
    ("train.alpha=-1", "train.alpha must be at least 0, got -1.0"),  # would maximise L_ms
    ("train.alpha=nan", "train.alpha must be a finite number, got nan"),
    ("train.alpha=inf", "train.alpha must be a finite number, got inf"),
    (f"train.seed={10**400}", "train.seed must be from 0 to 4294967295, got 1000"),  # an int past float's range
])
def test_a_value_out_of_range_is_refused_before_the_run_dir_is_written(prepared_root: Path, tmp_path: Path,
                                                                       override: str, message: str) -> None:
    # written first, the run dir would then refuse the corrected rerun as "another recipe"
    recipe = write_recipe(tmp_path, "rgb", ONE_STAGE)
    with pytest.raises(ConfigError, match=re.escape(message)):
        train(recipe, tmp_path / "run", [*TINY, f"data.root={prepared_root}", override])
    assert not (tmp_path / "run").exists()


def test_a_batch_the_processes_cannot_share_is_refused_before_the_run_dir_is_written(prepared_root: Path,
                                                                                    tmp_path: Path) -> None:
    plan = make_plan(load_recipe(write_recipe(tmp_path, "rgb", ONE_STAGE), [*TINY, f"data.root={prepared_root}"]))
    with pytest.raises(ConfigError, match="data.batch_size 4 is the global batch and must divide by the 3"):
        train_run(plan, tmp_path / "run", Console(), processes=Processes(0, 3))
    assert not (tmp_path / "run").exists()


def test_a_validation_part_of_excluded_classes_only_is_refused_naming_the_root(prepared_root: Path,
                                                                              tmp_path: Path) -> None:
    # other classes keep one training instance (S1's, never taken for validation); shake_box keeps three
    root = linked_root(prepared_root, tmp_path / "root", keep=lambda user, label: label == "shake_box" or user < "S3")
    recipe = write_recipe(tmp_path, "rgb", ONE_STAGE)
    with pytest.raises(DataError, match=rf"^{root}: the validation part holds only excluded classes \(shake_box;"):
        train(recipe, tmp_path / "run", [*TINY, f"data.root={root}", "data.exclude_classes=[shake_box]"])
    assert not (tmp_path / "run").exists()


def test_init_from_an_unrelated_checkpoint(prepared_root: Path, tmp_path: Path) -> None:
    config = ModelConfig(name="flow", num_classes=4, frames=3, flow_stack=2, image_size=48)
    foreign = tmp_path / "flow.pt"
    save_checkpoint(foreign, build_model(config), CheckpointMeta(config, ["a", "b", "c", "d"], {}))
    recipe = write_recipe(tmp_path, "rgb", [stage_yaml("s1", ["classifier"], 1, f"    init_from: ['{foreign}']\n")])
    why = r"'flow' checkpoint unrelated .*missing .*streams.rgb.backbone.\* \(218\)"
    with pytest.raises(CheckpointError, match=rf"{foreign}: .*{why}"):
        train(recipe, tmp_path / "run", [*TINY, f"data.root={prepared_root}"])
    assert not (tmp_path / "run").exists()


def test_unseen_test_class_is_a_warning_in_the_run_dir(prepared_root: Path, tmp_path: Path) -> None:
    root = linked_root(prepared_root, tmp_path / "root", keep=lambda user, label: user == "S2" or label != "take_cup")
    recipe = write_recipe(tmp_path, "rgb", ONE_STAGE)
    train(recipe, tmp_path / "run", [*TINY, f"data.root={root}"])
    text = RunDir(tmp_path / "run").warnings.read_text()
    assert "test user S2" in text and "take_cup" in text and "shake_box" not in text


def test_cli_prints_one_line_and_exits_1(prepared_root: Path, tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    recipe = write_recipe(tmp_path, "rgb", ONE_STAGE)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    done = subprocess.run([sys.executable, "-m", "fpar.cli", "train", str(recipe), f"data.root={prepared_root}",
                           *TINY, "--out", str(tmp_path / "busy")], capture_output=True, text=True, env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr + done.stdout
    assert done.stdout.strip().startswith("error:") and len(done.stdout.strip().splitlines()) == 1
    assert "busy: not empty and not an fpar run dir" in done.stdout
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]


def test_out_that_is_a_file_is_refused(prepared_root: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "rgb", ONE_STAGE)
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(ConfigError, match=rf"--out {tmp_path / 'notes.txt'}: a file, not a run dir"):
        train(recipe, tmp_path / "notes.txt", [*TINY, f"data.root={prepared_root}"])
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_an_unknown_test_user_names_the_root(prepared_root: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "rgb", ONE_STAGE)
    with pytest.raises(DataError, match=rf"^{prepared_root}: test user 'S9' not found; users are S1, S2, S3, S4"):
        train(recipe, tmp_path / "run", [*TINY, f"data.root={prepared_root}", "data.test_user=S9"])
    assert not (tmp_path / "run").exists()


def test_init_from_a_run_not_trained_yet_says_so(prepared_root: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "rgb", [stage_yaml("s1", ["classifier"], 1, "    init_from: ['nowhere/rgb:stage1']\n")])
    with pytest.raises(CheckpointError, match=r"init_from '\S*nowhere/rgb:stage1': \S*nowhere/rgb not found .*"
                                              r"stages.0.init_from=\[RUN_DIR:stage1\]"):
        train(recipe, tmp_path / "run", [*TINY, f"data.root={prepared_root}"])
    # the override the message suggests works
    first = tmp_path / "first"
    train(write_recipe(tmp_path, "rgb", ONE_STAGE, "first.yaml"), first, [*TINY, f"data.root={prepared_root}"])
    train(recipe, tmp_path / "run", [*TINY, f"data.root={prepared_root}", f"stages.0.init_from=[{first}:s1]"])
    assert RunDir(tmp_path / "run").checkpoint("best").is_file()


def test_a_gap_in_the_frame_numbers_is_refused_before_the_run_dir_is_written(prepared_root: Path,
                                                                            tmp_path: Path) -> None:
    # clips read files by position: after a gap every position would name the next file
    root = tmp_path / "root"
    shutil.copytree(prepared_root, root, ignore=shutil.ignore_patterns("flow_*"))
    frames = sorted((root / "processed_frames2").glob("*/*/*/rgb"))[0]
    (frames / "rgb0003.png").unlink()
    recipe = write_recipe(tmp_path, "rgb", ONE_STAGE)
    with pytest.raises(DataError, match=rf"^{frames}: rgb files are not numbered consecutively \(rgb0003\.png is "
                                        rf"missing\), so clip positions after the gap would read the wrong files"):
        train(recipe, tmp_path / "run", [*TINY, f"data.root={root}"])
    assert not (tmp_path / "run").exists()
