"""The app driven by Streamlit's AppTest: checkpoints listed, image and video through two models,
every bad upload gives its message and the page keeps working, uploads leave nothing behind."""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

sys.path.insert(0, str(Path(__file__).parents[1] / "explain"))  # the bad files live with the CAM tests
from cam_testkit import BAD_FILES, bad_files  # noqa: E402

from fpar.app.catalog import find_checkpoints  # noqa: E402
from fpar.app.launch import ENV_MAX_FRAMES, ENV_MAX_MB, ENV_RUNS, SCRIPT  # noqa: E402
from fpar.config import ModelConfig  # noqa: E402
from fpar.data.transforms import NORMALIZATION  # noqa: E402
from fpar.models import CheckpointMeta, build_model, save_checkpoint  # noqa: E402
from fpar.train.rundir import RunDir  # noqa: E402

TIMEOUT = 120


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tempfile's folder, redirected so the test can see what uploads leave behind."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def start(runs: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> AppTest:
    monkeypatch.setenv(ENV_RUNS, str(runs))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return AppTest.from_file(str(SCRIPT), default_timeout=TIMEOUT).run()


def texts(app: AppTest) -> str:
    return "\n".join(m.value for m in app.markdown)


def unescaped(markdown: str) -> str:
    """The text a markdown string shows, for strings the page escaped (`plain`)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def test_without_checkpoints_the_app_says_how_to_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = start(tmp_path / "empty", monkeypatch)
    assert not app.exception
    message = app.info[0].value
    assert "No checkpoint found" in message and "make demo" in message and "fpar import-egornn" in message
    # `make demo` trains no model yet: the page also names the command that does
    assert f"fpar train configs/demo/rgb.yaml --out {tmp_path / 'empty'}/train/rgb" in message


def test_checkpoints_are_listed_with_model_and_test_accuracy(runs: Path) -> None:
    entries, skipped = find_checkpoints(runs)
    assert [(e.path.relative_to(runs).as_posix(), e.model_name) for e in entries] == [
        ("rgb/best.pt", "rgb"), ("rgb_ms/best.pt", "rgb_ms")]
    assert entries[0].label(runs) == "rgb/best.pt · rgb · test 56.5%"
    assert entries[1].accuracy is None and not skipped


def test_image_through_two_models(runs: Path, tmp_path: Path, temp_root: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    app = start(runs, monkeypatch)
    assert app.multiselect[0].value == ["rgb/best.pt · rgb · test 56.5%", "rgb_ms/best.pt · rgb_ms"]
    app.file_uploader[0].upload(*_still(tmp_path))
    app.run()
    assert not app.exception and not app.error
    assert len(app.image) == 2 and len(app.table) == 2
    shown = unescaped(texts(app))
    assert "**rgb**" in shown and "**rgb_ms**" in shown and shown.count("Predicted: **") == 2
    assert list(temp_root.iterdir()) == []  # the upload's folder is gone


def test_video_through_two_models_gives_two_playable_videos(runs: Path, video: Path, temp_root: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    app = start(runs, monkeypatch)
    app.file_uploader[0].upload(video.name, video.read_bytes(), "video/mp4")
    app.run()
    assert not app.exception and not app.error
    videos = app.get("video")
    assert len(videos) == 2
    assert all(v.proto.url for v in videos) and all(v.proto.autoplay for v in videos)
    assert len(app.get("download_button")) == 2
    assert list(temp_root.iterdir()) == []
    app.multiselect[0].set_value([app.multiselect[0].value[1]]).run()  # one model: cached, no error
    assert not app.exception and len(app.get("video")) == 1


def test_an_upload_named_like_a_cam_output_is_not_overwritten(runs: Path, video: Path, temp_root: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # the first model's CAM video is `rgb-best.mp4`; a flow model would decode the upload again after it
    import streamlit as st

    from fpar.explain import render

    uploaded, writes = video.read_bytes(), []

    def checked_write(out: Path, media, *args, **kwargs):
        written = real_write(out, media, *args, **kwargs)
        writes.append((out, media.path, media.path.read_bytes() == uploaded))
        return written

    real_write = render.write_cam_video
    monkeypatch.setattr(render, "write_cam_video", checked_write)
    st.cache_data.clear()  # a picture cached by another test would skip the write
    app = start(runs, monkeypatch)
    app.file_uploader[0].upload("rgb-best.mp4", uploaded, "video/mp4")
    app.run()
    assert not app.exception and not app.error and len(app.get("video")) == 2
    assert [out.name for out, _, _ in writes] == ["rgb-best.mp4", "rgb_ms-best.mp4"]
    assert all(out != source and intact for out, source, intact in writes)


LIMIT_CASES = {  # the app's own limits, set through `fpar app`'s environment
    "too big": ({ENV_MAX_MB: "0.01"}, "over the limit of 0.01 MB"),
    "too long": ({ENV_MAX_FRAMES: "4"}, "longer than the limit of 4 frames"),
}


def _still(tmp_path: Path) -> tuple[str, bytes, str]:
    Image.new("RGB", (80, 60), (120, 90, 60)).save(tmp_path / "still.png")
    return "still.png", (tmp_path / "still.png").read_bytes(), "image/png"


# "unknown suffix" is not here: the uploader accepts only image and video suffixes (Streamlit refuses others).
@pytest.mark.parametrize("case", [*(c for c in BAD_FILES if c != "unknown suffix"), *LIMIT_CASES])
def test_bad_upload_gives_its_message_and_the_app_keeps_working(case: str, runs: Path, video: Path, tmp_path: Path,
                                                                temp_root: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    if case in LIMIT_CASES:
        (env, message), path = LIMIT_CASES[case], video
    else:
        env, (path, message) = {}, bad_files(tmp_path / "bad", video)[case]
    app = start(runs, monkeypatch, **env)
    app.file_uploader[0].upload(path.name, path.read_bytes(), "application/octet-stream")
    app.run()
    assert not app.exception
    assert len(app.error) == 1 and re.search(message, unescaped(app.error[0].value)), [e.value for e in app.error]
    assert str(temp_root) not in unescaped(app.error[0].value)  # the message names the upload, not its temporary copy
    assert list(temp_root.iterdir()) == []
    if case not in LIMIT_CASES:  # the page keeps working: a good file next gives results
        app.file_uploader[0].clear().upload(*_still(tmp_path))
        app.run()
        assert not app.exception and not app.error and len(app.image) == 2


def test_untrusted_names_reach_the_page_as_text(tmp_path: Path, temp_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Class names from a checkpoint, a 300-character upload name, a dangling link among the runs."""
    runs = tmp_path / "runs"
    cfg = ModelConfig(name="rgb", num_classes=3, frames=3, flow_stack=2, image_size=64, mem_size=16)
    names = ["![x](http://example.invalid/x.png)", "**bold**", "<b>tag</b>"]
    save_checkpoint(RunDir(runs / "rgb").checkpoint("best"), build_model(cfg), CheckpointMeta(cfg, names, NORMALIZATION))
    (runs / "gone.pt").symlink_to(tmp_path / "missing.pt")
    app = start(runs, monkeypatch)
    assert not app.exception and "gone.pt: checkpoint not found" in unescaped(app.sidebar.warning[0].value)
    _, data, mime = _still(tmp_path)
    app.file_uploader[0].upload("a" * 300 + ".png", data, mime)
    app.run()
    assert not app.exception and not app.error and len(app.image) == 1
    predicted = next(m.value for m in app.markdown if m.value.startswith("Predicted: "))
    shown_name = re.fullmatch(r"Predicted: \*\*(.*)\*\* \(.*%\)", predicted).group(1)
    assert unescaped(shown_name) in names and not any(raw in shown_name for raw in ("![", "**", "<b>"))
    shown = list(app.table[0].value["class"])
    assert sorted(unescaped(c) for c in shown) == sorted(names)
    assert not any(raw in cell for cell in shown for raw in ("![", "**", "<b>"))
    assert list(temp_root.iterdir()) == []


def test_fpar_app_refuses_a_port_out_of_range_and_warns_of_a_missing_runs_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import fpar.app.launch as launch
    from fpar.cli import app

    started = []
    monkeypatch.setattr(launch, "launch", lambda *args: started.append(args))
    bad = CliRunner().invoke(app, ["app", "--port", "99999"])
    assert bad.exit_code == 2 and "--port" in bad.output and not started  # not Streamlit's bind() traceback
    result = CliRunner().invoke(app, ["app", "--runs", str(tmp_path / "nothing"), "--port", "8502"], terminal_width=300)
    assert result.exit_code == 0 and len(started) == 1
    assert f"warning: {tmp_path / 'nothing'}: no such folder yet" in result.output
