"""The prepare run: layout and counts, resume, sharding, bad videos, the CLI's exit code."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from prepare_helpers import render, write_video
from fpar.cli import app
from fpar.data.layout import COURSE, PREPARE_TEMP_NAME, discover
from fpar.errors import DataError
from fpar.prepare.pipeline import PrepareSettings, prepare, read_manifest
from fpar.data.images import read_image

SETTINGS = PrepareSettings(size=(64, 48))
EXPECTED = {("S1", "take_cup", "1"): 6, ("S1", "take_cup", "2"): 5, ("S2", "put_cup", "1"): 5,
            ("S2", "take_cup", "1"): 6, ("S2", "put_cup", "2"): 7}


def _files(root: Path) -> dict[str, str]:
    """Every file of the dataset layout (manifest and settings included) by relative path -> hash."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def clean(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    report = prepare(raw / "labels.csv", root, SETTINGS, workers=1, progress=False)
    assert (report.done, report.failed) == (5, [])
    return root


def test_layout_counts_and_alignment(clean: Path) -> None:
    found = discover(clean)
    assert found.problems == []
    assert {s.id: s.n_frames for s in found.samples} == {"/".join(k): n for k, n in EXPECTED.items()}
    for sample in found.samples:
        n = sample.n_frames
        assert (sample.n_flows, len(sample.mmaps)) == (n - 1, n)
        assert read_image(sample.frame(0)).shape == (48, 64, 3)
        assert read_image(sample.flow("x", 0), gray=True).shape == (48, 64)
        assert read_image(sample.mmaps[-1], gray=True).tolist() == read_image(sample.mmaps[-2], gray=True).tolist()
    assert not (clean / PREPARE_TEMP_NAME).exists()
    manifest = read_manifest(clean)
    assert {k: int(r["frames"]) for k, r in manifest.items()} == EXPECTED
    assert all(r["status"] == "ok" and int(r["flows"]) == int(r["frames"]) - 1 for r in manifest.values())
    assert manifest["S2", "put_cup", "2"]["video"] == "videos/long.mp4"


def test_resume_after_an_interrupted_run_gives_the_clean_files(raw: Path, clean: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(clean, root)
    key = ("S1", "take_cup", "2")
    # killed while renaming: frames in place, flow x missing, manifest not yet ok
    shutil.rmtree(COURSE.sample_roots(root, *key)[1])
    manifest = (root / "manifest.csv").read_text().splitlines()
    (root / "manifest.csv").write_text("\n".join(l for l in manifest if not l.startswith("S1,take_cup,2,")) + "\n")
    # killed while writing another sample: a half-written temp folder, nothing in place
    for folder in COURSE.sample_roots(root, "S2", "put_cup", "2"):
        shutil.rmtree(folder)
    (root / PREPARE_TEMP_NAME / "S2__put_cup__2" / "junk").mkdir(parents=True)
    report = prepare(raw / "labels.csv", root, SETTINGS, workers=1, progress=False)
    assert (report.done, report.skipped) == (2, 3)
    assert _files(root) == _files(clean)
    assert not (root / PREPARE_TEMP_NAME).exists()


def test_parallel_shards_give_the_clean_files(raw: Path, clean: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    for shard in ((0, 2), (1, 2)):
        assert prepare(raw / "labels.csv", root, SETTINGS, workers=2, shard=shard, progress=False).failed == []
    assert _files(root) == _files(clean)


def test_other_settings_on_an_existing_root_are_refused(raw: Path, clean: Path) -> None:
    with pytest.raises(DataError, match="flow differ"):
        prepare(raw / "labels.csv", clean, PrepareSettings(size=(64, 48), flow="farneback"), progress=False)


def test_bad_videos_are_reported_and_skipped_and_the_exit_code_says_so(raw: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    write_video(tmp_path / "one.mp4", render(1)[0])
    shutil.copy(raw / "videos" / "a.mp4", tmp_path / "good.mp4")
    (tmp_path / "labels.csv").write_text(
        "video,user,label,start,end\nempty.mp4,S1,x,,\ncorrupt.mp4,S1,x,,\none.mp4,S1,x,,\n"
        "good.mp4,S1,y,,\ngood.mp4,S1,y,3,40\n")
    root = tmp_path / "root"
    result = CliRunner().invoke(app, ["prepare", "--videos", str(tmp_path / "labels.csv"), "--out", str(root),
                                      "--size", "64x48", "--workers", "1"])
    assert result.exit_code == 1, result.output
    manifest = read_manifest(root)
    assert [manifest["S1", "x", i]["status"] for i in "123"] == ["failed"] * 3
    assert "empty file (0 bytes)" in manifest["S1", "x", "1"]["error"]
    assert "cannot decode" in manifest["S1", "x", "2"]["error"]
    assert "too short" in manifest["S1", "x", "3"]["error"]
    assert "segment ends at frame 40 but the video has 6 frames" in manifest["S1", "y", "2"]["error"]
    assert manifest["S1", "y", "1"]["status"] == "ok"
    for name in ("empty.mp4", "corrupt.mp4", "one.mp4"):  # one summary line per failure, naming the file
        assert len([line for line in result.output.splitlines() if f"({tmp_path / name})" in line]) == 1
    assert [s.id for s in discover(root).samples] == ["S1/y/1"]


def test_gtea_annotations_and_videos_prepare_into_a_root_that_passes_the_strict_check(
        raw: Path, tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    (tmp_path / "labels").mkdir()
    shutil.copy(raw / "videos" / "long.mp4", tmp_path / "videos" / "S1_Tea_C1.mp4")  # 14 frames
    (tmp_path / "labels" / "S1_Tea_C1.txt").write_text("<take><cup> (1-6) [1]\n<stir><cup> (8-14) [2]\n")
    root = tmp_path / "root"
    runner = CliRunner()
    result = runner.invoke(app, ["prepare", "--videos", str(tmp_path / "videos"), "--labels",
                                 str(tmp_path / "labels"), "--out", str(root), "--size", "64x48", "--workers", "1"])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(root)
    assert {k: (r["frames"], r["video"], r["start"], r["end"]) for k, r in manifest.items()} == {
        ("S1", "take_cup", "1"): ("6", "S1_Tea_C1", "0", "5"),
        ("S1", "stir_spoon,cup", "1"): ("7", "S1_Tea_C1", "7", "13")}
    check = runner.invoke(app, ["data", "check", str(root), "--strict", "--frames", "5"])
    assert check.exit_code == 0, check.output
