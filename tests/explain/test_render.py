"""CAM pictures: the video decodes at the input's frame count, size and rate; side by side doubles
the width; overlays blend as documented; `fpar cam` writes its files and prints the top-5."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from cam_testkit import tiny
from typer.testing import CliRunner

from fpar.cli import app
from fpar.errors import ConfigError
from fpar.explain.cam import explain
from fpar.explain.media import read_media
from fpar.explain.render import heat, overlay
from fpar.explain.run import sheet_path, write_outputs
from fpar.models import save_checkpoint


def decoded(path: Path) -> tuple[int, int, int, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return frames, stream.codec_context.width, stream.codec_context.height, float(stream.average_rate)


@pytest.mark.parametrize("models", [1, 2])
def test_cam_video_decodes_at_the_inputs_frame_count_and_size(models: int, tmp_path: Path, video: Path) -> None:
    media = read_media(video)
    results = [explain(*tiny(name), media) for name in ["rgb", "rgb_ms"][:models]]
    written = write_outputs(tmp_path / "cam.mp4", media, results)
    assert written == [tmp_path / "cam.mp4", sheet_path(tmp_path / "cam.mp4")]
    with av.open(str(video)) as container:
        rate = float(container.streams.video[0].average_rate)
    assert decoded(written[0]) == (16, 128 * models, 96, pytest.approx(rate))
    with av.open(str(written[0])) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert written[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_image_gives_one_picture_and_a_video_needs_mp4(tmp_path: Path, video: Path) -> None:
    media = read_media(video)
    with pytest.raises(ConfigError, match="name it cam.mp4"):
        write_outputs(tmp_path / "cam.png", media, [explain(*tiny("rgb"), media)])


def test_overlay_blends_frame_and_heat() -> None:
    frame = np.full((8, 8, 3), 100, np.uint8)
    cam = np.ones((2, 2), np.float32)
    np.testing.assert_array_equal(overlay(frame, cam, alpha=0.0), frame)
    hot = heat(cam, 8, 8)
    np.testing.assert_allclose(overlay(frame, cam, alpha=1.0), np.clip(hot, 0, 255).astype(np.uint8))
    assert hot[0, 0, 0] > hot[0, 0, 2]  # jet: 1 is red, not blue


def test_fpar_cam_writes_video_and_sheet_and_prints_top5(tmp_path: Path, video: Path) -> None:
    model, meta = tiny("rgb")
    save_checkpoint(tmp_path / "rgb.pt", model, meta)
    out = tmp_path / "out" / "cam.mp4"
    result = CliRunner().invoke(app, ["cam", str(tmp_path / "rgb.pt"), str(video), "--out", str(out),
                                      "--method", "attention"])
    assert result.exit_code == 0, result.output
    assert "rgb: " in result.output and "top-5" in result.output
    assert out.is_file() and sheet_path(out).is_file()
    assert decoded(out)[0] == 16
    wrong = CliRunner().invoke(app, ["cam", "--compare", str(tmp_path / "rgb.pt"), str(video), "--out", str(out)])
    assert wrong.exit_code != 0 and "expected two to four checkpoints" in str(wrong.exception)
