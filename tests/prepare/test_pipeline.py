"""The prepare run: layout and counts, resume, sharding, bad videos, the CLI's exit code."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import os
import subprocess
import sys

from prepare_helpers import files_of, render, write_video
from fpar.cli import app
from fpar.data.layout import COURSE, PREPARE_TEMP_NAME, discover, read_manifest
from fpar.errors import DataError
from fpar.prepare.pipeline import PrepareSettings, prepare
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
    """Both shards run at once, each with two workers, on one root and one manifest."""
    root = tmp_path / "root"
    runs = [subprocess.Popen([sys.executable, "-m", "fpar.cli", "prepare", "--videos", str(raw / "labels.csv"),
                              "--out", str(root), "--size", "64x48", "--workers", "2", "--shard", shard],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for shard in ("1/2", "2/2")]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stdout.read()
    assert files_of(root) == files_of(clean)  # hidden files too: no lock, journal or work folder left


def test_other_settings_on_an_existing_root_are_refused(raw: Path, clean: Path) -> None:
    with pytest.raises(DataError, match="flow: root has dis, this run asks farneback"):
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
        assert all(line.count(str(tmp_path / name)) <= 1 for line in result.output.splitlines())  # path once
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


def test_a_changed_video_redoes_its_samples_and_says_so(raw: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        shutil.copy(raw / "videos" / f"{name}.mp4", tmp_path / f"{name}.mp4")
    (tmp_path / "labels.csv").write_text("video,user,label\na.mp4,S1,x\nb.mp4,S1,y\n")
    root = tmp_path / "root"
    assert prepare(tmp_path / "labels.csv", root, SETTINGS, workers=1, progress=False).done == 2
    before = _files(root)
    manifest = read_manifest(root)
    stat = (tmp_path / "a.mp4").stat()
    assert manifest["S1", "x", "1"]["video_bytes"] == str(stat.st_size)
    assert manifest["S1", "x", "1"]["video_mtime_ns"] == str(stat.st_mtime_ns)
    write_video(tmp_path / "a.mp4", render(6, seed=7)[0])  # other content at the same path
    report = prepare(tmp_path / "labels.csv", root, SETTINGS, workers=1, progress=False)
    assert (report.done, report.skipped, report.changed, report.failed) == (1, 1, 1, [])
    assert "1 prepared (1 redone because their video changed)" in report.summary()[0]
    after = _files(root)
    frame = "processed_frames2/S1/x/1/rgb/rgb0001.png"
    assert frame in after and after[frame] != before[frame]
    assert {k: v for k, v in after.items() if "/S1/y/" in k} == {k: v for k, v in before.items() if "/S1/y/" in k}
    # the same bytes written again (as `fpar synth` re-run does): only the mtime differs, the SHA-1 keeps it
    shutil.copy(raw / "videos" / "b.mp4", tmp_path / "b.mp4")
    os.utime(tmp_path / "b.mp4", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = prepare(tmp_path / "labels.csv", root, SETTINGS, workers=1, progress=False)
    assert (again.done, again.skipped, again.changed) == (0, 2, 0)
    assert read_manifest(root)["S1", "y", "1"]["video_mtime_ns"] == str(stat.st_mtime_ns + 10**9)  # refreshed
    # same size, other bytes, other mtime: redone
    data = bytearray((tmp_path / "b.mp4").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "b.mp4").write_bytes(bytes(data))
    assert prepare(tmp_path / "labels.csv", root, SETTINGS, workers=1, progress=False).changed == 1


def test_out_that_is_a_file_is_one_data_error_naming_it(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    out.write_text("not a folder")
    with pytest.raises(DataError, match=f"{out}: --out must be a folder"):
        prepare(raw / "labels.csv", out, SETTINGS, progress=False)
    with pytest.raises(DataError, match=f"{out / 'root'}: cannot create the output folder"):
        prepare(raw / "labels.csv", out / "root", SETTINGS, progress=False)


@pytest.mark.parametrize("case", ["video as labels", "out is a file"])
def test_cli_input_mistakes_are_one_line_without_traceback(raw: Path, tmp_path: Path, case: str) -> None:
    out, videos, named = tmp_path / "root", raw / "labels.csv", None
    if case == "video as labels":
        videos = named = raw / "videos" / "a.mp4"
    else:
        out.write_text("")
        named = out
    result = subprocess.run([sys.executable, "-m", "fpar.cli", "prepare", "--videos", str(videos), "--out", str(out)],
                            capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    assert str(named) in " ".join(output.split())
    if case == "video as labels":
        assert "is not a labels CSV (or folder of videos)" in " ".join(output.split())


def test_gtea_segment_past_the_end_names_the_annotation_line_in_its_own_numbers(raw: Path, tmp_path: Path) -> None:
    shutil.copy(raw / "videos" / "long.mp4", tmp_path / "S1_Tea_C1.mp4")  # 14 frames
    (tmp_path / "S1_Tea_C1.txt").write_text("<take><cup> (1-6) [1]\n<stir><cup> (8-20) [2]\n")
    report = prepare(tmp_path / "S1_Tea_C1.txt", tmp_path / "root", SETTINGS, workers=1, progress=False)
    assert report.done == 1
    [(_, sample, reason)] = report.failed
    assert sample == "S1/stir_spoon,cup/1"
    assert reason == (f"{tmp_path / 'S1_Tea_C1.txt'}:2: segment ends at frame 20 (frames counted from 1) "
                      f"but the video has 14 frames")


def test_summary_counts_in_words_and_a_finished_root_shows_no_progress_bar(raw: Path, clean: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    from fpar.prepare.pipeline import PrepareReport

    assert PrepareReport(samples=1, done=1).summary()[0].startswith("1 sample: 1 prepared")
    assert PrepareReport(samples=2).summary()[0].startswith("2 samples: ")
    capsys.readouterr()
    report = prepare(raw / "labels.csv", clean, SETTINGS, workers=1, progress=True)
    assert (report.done, report.skipped) == (0, 5)
    assert "prepare" not in capsys.readouterr().err


def test_a_deleted_labels_row_leaves_no_stale_sample_and_data_check_flags_unvouched_ones(
        raw: Path, clean: Path, tmp_path: Path, capsys) -> None:
    from cli_kit import run_cli

    labels = tmp_path / "labels.csv"
    rows = (raw / "labels.csv").read_text().splitlines()
    labels.write_text("\n".join(rows) + "\n")
    for name in ("a", "b", "c", "long"):
        (tmp_path / "videos").mkdir(exist_ok=True)
        shutil.copy(raw / "videos" / f"{name}.mp4", tmp_path / "videos" / f"{name}.mp4")
    root = tmp_path / "root"
    shutil.copytree(clean, root)
    labels.write_text("\n".join(r for r in rows if not r.startswith("videos/a.mp4")) + "\n")  # S1/take_cup/1 gone
    report = prepare(labels, root, SETTINGS, workers=1, progress=False)
    assert (report.done, report.skipped, report.removed) == (1, 3, 1)  # b moved up from instance 2 to 1
    assert "1 removed (no longer in the labels file)" in report.summary()[0]
    fresh = tmp_path / "fresh"
    prepare(labels, fresh, SETTINGS, workers=1, progress=False)
    assert files_of(root) == files_of(fresh)  # the same root as a run on the edited file alone
    # an instance on disk that the manifest does not vouch for is a problem of `data check`
    for source, copy in zip(COURSE.sample_roots(root, "S1", "take_cup", "1"), COURSE.sample_roots(root, "S1", "take_cup", "2")):
        shutil.copytree(source, copy)
    code, output = run_cli(["data", "check", str(root), "--frames", "5", "--flow-stack", "4", "--strict"], capsys)
    assert code == 1
    assert "S1/take_cup/2: not listed as ok in manifest.csv" in " ".join(output.split())
    assert "1 problem(s)" in output  # that one: the copy is complete otherwise


def test_hand_masks_reach_the_camera_estimate_of_their_own_frame(raw: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Mask of frame 8 of long.mp4 (a segment from frame 7): used for the pair 8->9 only."""
    from fpar.prepare import writer

    masks = tmp_path / "masks" / "long"
    masks.mkdir(parents=True)
    image = np.zeros((72, 96), np.uint8)
    image[:, :30] = 255
    cv2.imwrite(str(masks / "0008.png"), image)
    seen: dict[int, int] = {}
    computer = writer.FlowComputer

    class Spy(computer):
        def __call__(self, prev_gray, next_gray, exclude=None):  # noqa: ANN001, ANN204
            seen[len(seen)] = -1 if exclude is None else int(exclude.sum())
            return super().__call__(prev_gray, next_gray, exclude)

    monkeypatch.setattr(writer, "FlowComputer", Spy)
    monkeypatch.setattr("fpar.prepare.video_run.FlowComputer", Spy)
    (tmp_path / "labels.csv").write_text(f"video,user,label,start,end\n{raw / 'videos' / 'long.mp4'},S1,x,7,12\n")
    settings = PrepareSettings(size=(64, 48), hand_masks=tmp_path / "masks")
    assert prepare(tmp_path / "labels.csv", tmp_path / "root", settings, workers=1, progress=False).failed == []
    assert seen == {0: -1, 1: 20 * 48, 2: -1, 3: -1, 4: -1}  # pairs 7->8, 8->9 (masked: 20 of 64 columns), ...


def test_hand_masks_named_otherwise_are_refused_naming_the_file(raw: Path, tmp_path: Path) -> None:
    masks = tmp_path / "masks" / "a"
    masks.mkdir(parents=True)
    cv2.imwrite(str(masks / "mask_v2_0003.png"), np.zeros((72, 96), np.uint8))
    (tmp_path / "labels.csv").write_text(f"video,user,label\n{raw / 'videos' / 'a.mp4'},S1,x\n")
    settings = PrepareSettings(size=(64, 48), hand_masks=tmp_path / "masks")
    [(_, _, reason)] = prepare(tmp_path / "labels.csv", tmp_path / "root", settings, workers=1, progress=False).failed
    assert reason.startswith(f"{masks / 'mask_v2_0003.png'}: hand masks must be named <frame index>.png")


def test_a_segment_that_starts_past_the_end_says_so(raw: Path, tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text(f"video,user,label,start,end\n{raw / 'videos' / 'a.mp4'},S1,x,9,\n"
                                         f"{raw / 'videos' / 'b.mp4'},S1,x,7,9\n")
    report = prepare(tmp_path / "labels.csv", tmp_path / "root", SETTINGS, workers=1, progress=False)
    assert [reason for _, _, reason in report.failed] == [
        f"{tmp_path / 'labels.csv'}:2: segment starts at frame 9 but the video has 6 frames",
        f"{tmp_path / 'labels.csv'}:3: segment starts at frame 7 but the video has 5 frames"]


def test_a_sample_whose_folders_cannot_be_made_fails_alone(raw: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer's set-up (removing leftovers, making folders) is inside the per-sample error handling."""
    from fpar.prepare import writer

    made = writer.SampleWriter.__init__

    def refuse(self, root, work, segment, *args):  # noqa: ANN001, ANN202
        if segment.label == "y":
            raise OSError(36, "File name too long", str(work / segment.label))
        made(self, root, work, segment, *args)

    monkeypatch.setattr(writer.SampleWriter, "__init__", refuse)
    (tmp_path / "labels.csv").write_text(f"video,user,label\n{raw / 'videos' / 'a.mp4'},S1,x\n"
                                         f"{raw / 'videos' / 'a.mp4'},S1,y\n")
    report = prepare(tmp_path / "labels.csv", tmp_path / "root", SETTINGS, workers=1, progress=False)
    assert report.done == 1
    [(_, sample, reason)] = report.failed
    assert sample == "S1/y/1" and reason.startswith("OSError: [Errno 36] File name too long")


def test_a_label_too_long_for_a_folder_name_is_one_line_from_the_cli(raw: Path, tmp_path: Path, capsys) -> None:
    from cli_kit import run_cli

    (tmp_path / "labels.csv").write_text(f"video,user,label\n{raw / 'videos' / 'a.mp4'},S1,{'x' * 300}\n")
    code, output = run_cli(["prepare", "--videos", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "root")],
                           capsys)
    assert code == 1 and "Traceback" not in output, output
    assert f"{tmp_path / 'labels.csv'}:2: label is 300 bytes long" in " ".join(output.split())


def test_warp_flow_images_give_the_flow_prepare_wrote(raw: Path, clean: Path) -> None:
    """`fpar.prepare.flow.warp_flow_images` is prepare's flow without the pipeline (CAM reuses it)."""
    from fpar.io.video import decode
    from fpar.prepare.flow import warp_flow_images

    frames = [rgb for _, rgb in decode(raw / "videos" / "long.mp4", SETTINGS.size, 7, 13)]  # S2/put_cup/2
    images = list(warp_flow_images(frames, SETTINGS.flow, SETTINGS.warp, SETTINGS.bound))
    sample = next(s for s in discover(clean).samples if s.id == "S2/put_cup/2")
    assert len(images) == sample.n_flows == 6
    for position, (x, y) in enumerate(images):
        assert np.array_equal(x, read_image(sample.flow("x", position), gray=True))
        assert np.array_equal(y, read_image(sample.flow("y", position), gray=True))


def _blas_threads_of(root: Path, work: Path, settings: PrepareSettings, job) -> str | None:  # noqa: ANN001
    """Stands in for `run_video` in a worker: what the worker's environment says of OpenBLAS."""
    return os.environ.get("OPENBLAS_NUM_THREADS")


@pytest.mark.parametrize("user_setting", [None, "4"])
def test_prepare_workers_start_with_one_blas_thread_and_the_environment_is_given_back(
        user_setting: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run_jobs`'s spawned workers load numpy with one OpenBLAS thread, unless the user chose a
    number; this process's environment is as it was afterwards."""
    from fpar.prepare import pool
    from fpar.prepare.video_run import VideoJob

    if user_setting is None:
        monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", user_setting)
    monkeypatch.setattr(pool, "run_video", _blas_threads_of)
    jobs = [VideoJob(tmp_path / f"{name}.mp4", ()) for name in ("a", "b")]  # two jobs: a pool, not a loop
    (tmp_path / "root").mkdir()
    with pool.RunSpace(tmp_path / "root", "test") as space:
        seen = [result for _, result in pool.run_jobs(tmp_path / "root", space, SETTINGS, jobs, workers=2)]
    assert seen == [user_setting or "1"] * 2
    assert os.environ.get("OPENBLAS_NUM_THREADS") == user_setting
