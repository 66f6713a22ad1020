"""The synthetic data set: files, determinism, and ground truth that matches the pixels."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fpar.cli import app
from fpar.data.preview import contact_sheet
from fpar.data.synthetic import (
    DEFAULT_CLASSES,
    SynthConfig,
    class_pairs,
    config_from_options,
    ground_truth_path,
    load_ground_truth,
    synthesize,
)
from fpar.data.synthetic.motion import action_track
from fpar.errors import DataError, FparError
from fpar.io.video import read_video

TINY = SynthConfig.tiny()


def _rows(root: Path) -> list[dict[str, str]]:
    with (root / "labels.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _clip(root: Path, video: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    moving, camera = load_ground_truth(ground_truth_path(root, video))
    return read_video(root / video), moving, camera


def test_labels_csv_lists_every_clip_once(synth_raw: Path) -> None:
    assert (synth_raw / "labels.csv").read_text().splitlines()[0] == "video,user,label"
    rows = _rows(synth_raw)
    assert len(rows) == len(TINY.users) * len(TINY.classes) * TINY.clips_per_class
    assert Counter((r["user"], r["label"]) for r in rows) == {
        (u, c): TINY.clips_per_class for u in TINY.users for c in TINY.classes
    }
    assert len({r["video"] for r in rows}) == len(rows)
    for row in rows:
        assert not Path(row["video"]).is_absolute() and (synth_raw / row["video"]).is_file()


def test_every_video_decodes_at_its_size_with_matching_ground_truth(synth_raw: Path) -> None:
    for row in _rows(synth_raw):
        frames, moving, camera = _clip(synth_raw, row["video"])
        assert frames.shape == (TINY.frames, TINY.height, TINY.width, 3) and frames.dtype == np.uint8
        assert moving.shape == (TINY.frames, TINY.height, TINY.width) and moving.dtype == bool
        assert camera.shape == (TINY.frames, 3, 3)
        np.testing.assert_allclose(camera[0], np.eye(3), atol=1e-12)
        assert moving.any(), f"{row['video']}: nothing moves"


def test_same_seed_gives_identical_data_with_any_number_of_workers(synth_raw: Path, tmp_path: Path) -> None:
    again = synthesize(tmp_path, SynthConfig.tiny(), progress=False, workers=2).out_dir
    assert (again / "labels.csv").read_bytes() == (synth_raw / "labels.csv").read_bytes()
    for row in _rows(synth_raw):
        for a, b in zip(_clip(synth_raw, row["video"]), _clip(again, row["video"])):
            np.testing.assert_array_equal(a, b)


def test_a_clip_does_not_depend_on_the_other_clips(synth_raw: Path, tmp_path: Path) -> None:
    cfg = SynthConfig.tiny()
    cfg.users, cfg.classes, cfg.clips_per_class = ["S3"], ["take_box"], 2
    alone = synthesize(tmp_path, cfg, progress=False).out_dir
    for a, b in zip(_clip(synth_raw, "videos/S3_take_box_01.mp4"), _clip(alone, "videos/S3_take_box_01.mp4")):
        np.testing.assert_array_equal(a, b)


def test_another_seed_gives_other_clips(synth_raw: Path, tmp_path: Path) -> None:
    cfg = SynthConfig.tiny()
    cfg.users, cfg.classes, cfg.clips_per_class, cfg.seed = ["S1"], ["take_cup"], 1, 1
    other = synthesize(tmp_path, cfg, progress=False).out_dir
    video = "videos/S1_take_cup_00.mp4"
    frames, moving, camera = _clip(other, video)
    base_frames, base_moving, base_camera = _clip(synth_raw, video)
    assert np.abs(frames.astype(int) - base_frames).mean() > 10
    assert not np.array_equal(moving, base_moving) and not np.allclose(camera, base_camera)


def _step_differences(frames: np.ndarray, moving: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Per frame step t -> t+1, mean |difference| of grey levels: (static after undoing the camera,
    static without undoing it, moving after undoing it). Static excludes what moves at t or t+1
    and a margin around it (blur, chroma subsampling); rows are NaN where a region is too small."""
    grey = frames.astype(np.float32).mean(axis=3)
    h, w = moving.shape[1:]
    out = np.full((len(grey) - 1, 3), np.nan)
    for t in range(len(grey) - 1):
        step = camera[t + 1] @ np.linalg.inv(camera[t])  # frame t -> frame t+1
        back = lambda image, flags: cv2.warpPerspective(image, step, (w, h), flags=flags | cv2.WARP_INVERSE_MAP)
        undone = back(grey[t + 1], cv2.INTER_LINEAR)
        inside = back(np.ones((h, w), np.uint8), cv2.INTER_NEAREST) > 0
        moves = moving[t] | (back(moving[t + 1].astype(np.uint8), cv2.INTER_NEAREST) > 0)
        static = cv2.erode((inside & ~moves).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        core = cv2.erode(moving[t].astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        out[t, :2] = np.abs(undone - grey[t])[static].mean(), np.abs(grey[t + 1] - grey[t])[static].mean()
        if (core & inside).sum() >= 30:
            out[t, 2] = np.abs(undone - grey[t])[core & inside].mean()
    return out


def test_moving_mask_is_what_changes_once_the_camera_is_undone(synth_raw: Path) -> None:
    diffs = np.concatenate([_step_differences(*_clip(synth_raw, r["video"])) for r in _rows(synth_raw)])
    static, moving = diffs[:, 0], diffs[:, 2]
    assert np.nanmean(static) < 5.0  # sensor noise (sigma 1.5-4), light change and compression only
    assert np.nanmean(moving) > 4 * np.nanmean(static)
    paired = ~np.isnan(moving)
    assert paired.sum() > 100 and np.mean(moving[paired] > static[paired]) > 0.95


def test_camera_motion_is_large_enough_that_compensation_matters(synth_raw: Path) -> None:
    corners = np.array([[0, 0], [TINY.width, 0], [0, TINY.height], [TINY.width, TINY.height]], np.float32)[:, None]
    shifts, diffs = [], []
    for row in _rows(synth_raw):
        frames, moving, camera = _clip(synth_raw, row["video"])
        for a, b in zip(camera[:-1], camera[1:]):
            moved = cv2.perspectiveTransform(corners, b @ np.linalg.inv(a))
            shifts.append(np.linalg.norm(moved - corners, axis=2).mean())
        diffs.append(_step_differences(frames, moving, camera)[:, :2])
    assert np.median(shifts) > 0.01 * TINY.width  # the background moves about 1.4 % of the width per frame
    compensated, raw = np.concatenate(diffs).mean(axis=0)
    assert raw > 2.5 * compensated


def test_order_only_pairs_are_the_same_action_reversed_in_time() -> None:
    rng = lambda: np.random.default_rng(7)  # noqa: E731 - the same draws for both verbs
    take, put = action_track("take", 20, 160, 120, rng()), action_track("put", 20, 160, 120, rng())
    np.testing.assert_array_equal(put.obj, take.obj[::-1])
    np.testing.assert_array_equal(put.hand, take.hand[::-1])
    assert not np.allclose(take.obj, take.obj[::-1])  # take itself is not symmetric in time
    np.testing.assert_array_equal(put.moving()[1:-1], take.moving()[::-1][2:])  # the same steps, reversed


def test_class_pairs_of_the_default_classes() -> None:
    assert class_pairs(DEFAULT_CLASSES) == {
        "order_only": [("take_cup", "put_cup"), ("take_box", "put_box")],
        "object_only": [("take_cup", "take_box"), ("put_cup", "put_box"), ("shake_box", "shake_bottle")],
    }
    tiny = class_pairs(TINY.classes)
    assert tiny["order_only"] and tiny["object_only"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": "abc"}, "'abc'"),
        ({"size": "321x240"}, "321x240"),
        ({"size": "32x24"}, "32x24"),
        ({"classes": "jump_cup"}, "unknown verb 'jump'"),
        ({"classes": "take_plate"}, "unknown object 'plate'"),
        ({"classes": "take_cup,take_cup"}, "distinct"),
        ({"users": "S1,S1"}, "distinct"),
        ({"users": "S 1"}, "'S 1'"),
        ({"clips_per_class": 0}, "at least 1"),
        ({"frames": 3}, "at least"),
    ],
)
def test_bad_options_raise_a_clear_error(options: dict, message: str) -> None:
    with pytest.raises(FparError, match=message):
        config_from_options(**options)


def test_tiny_preset_and_explicit_options() -> None:
    cfg = config_from_options(tiny=True, size="96x72", users="A,B")
    assert (cfg.width, cfg.height, cfg.users, cfg.frames) == (96, 72, ["A", "B"], TINY.frames)
    default = SynthConfig()
    assert default.clips_per_class >= 5 and len(default.classes) >= 6


def test_ground_truth_reader_names_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, moving=np.zeros((4, 8, 8), bool))
    with pytest.raises(DataError, match="bad.npz"):
        load_ground_truth(bad)


def test_cli_help_shows_the_library_defaults() -> None:
    result = CliRunner().invoke(app, ["synth", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    default = SynthConfig()
    for text in (",".join(DEFAULT_CLASSES), ",".join(TINY.classes), ",".join(default.users),
                 f"{default.width}x{default.height}; --tiny: {TINY.width}x{TINY.height}",
                 f"{default.clips_per_class}; --tiny: {TINY.clips_per_class}",
                 f"{default.frames}; --tiny: {TINY.frames}"):
        assert text in result.output


def test_cli_writes_a_set_and_reports_bad_options_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["synth", "--out", str(tmp_path), "--tiny", "--users", "S9",
                                      "--classes", "stir_cup,pour_bottle", "--clips-per-class", "1"])
    assert result.exit_code == 0, result.output
    assert [r["video"] for r in _rows(tmp_path)] == ["videos/S9_stir_cup_00.mp4", "videos/S9_pour_bottle_00.mp4"]
    bad = subprocess.run([sys.executable, "-m", "fpar.cli", "synth", "--out", str(tmp_path), "--size", "abc"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "size 'abc'" in bad.stdout and "Traceback" not in bad.stdout + bad.stderr


def test_contact_sheet_is_a_png_with_a_row_per_clip(synth_raw: Path, tmp_path: Path) -> None:
    small = contact_sheet(synth_raw, tmp_path / "two.png", n_clips=2, n_frames=3)
    big = contact_sheet(synth_raw, tmp_path / "sheet" / "four.png", n_clips=4, n_frames=3)
    with Image.open(small) as a, Image.open(big) as b:
        assert a.format == b.format == "PNG" and a.width == b.width and b.height > 1.5 * a.height
    with pytest.raises(DataError, match="labels.csv"):
        contact_sheet(tmp_path / "nothing", tmp_path / "x.png")


def test_synth_out_that_is_a_file_is_one_line_naming_it(tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.write_text("a file")
    result = subprocess.run([sys.executable, "-m", "fpar.cli", "synth", "--out", str(out), "--tiny"],
                            capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    assert f"{out}: --out must be a folder" in " ".join(output.split())
