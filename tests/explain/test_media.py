"""Untrusted input: every kind of bad file is one DataError naming it and saying what is wrong."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from fpar.errors import DataError
from fpar.explain.limits import Limits
from fpar.explain.media import DISPLAY_SIDE, read_media


def zero_frame_avi(path: Path) -> Path:
    """An AVI with a video stream and no frame."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    return path


def bad_files(folder: Path, video: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the message it must give)."""
    data = video.read_bytes()
    folder.mkdir(exist_ok=True)
    (folder / "notes.png").write_text("not an image")
    (folder / "notes.mp4").write_text("not a video")
    (folder / "notes.txt").write_text("neither")
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    Image.new("RGB", (32, 24)).save(folder / "picture.png")
    (folder / "picture.mp4").write_bytes((folder / "picture.png").read_bytes())
    return {
        "text named .png": (folder / "notes.png", "notes.png: unreadable image"),
        "text named .mp4": (folder / "notes.mp4", "notes.mp4: cannot decode video"),
        "unknown suffix": (folder / "notes.txt", r"notes.txt: not an image or a video \(suffix '.txt'\)"),
        "truncated video": (folder / "truncated.mp4", "truncated.mp4: cannot decode video"),
        "zero frames": (zero_frame_avi(folder / "empty.avi"), "empty.avi: video without frames"),
        "image renamed .mp4": (folder / "picture.mp4", r"picture.mp4: this is a PNG image named like a video \(.mp4\)"),
    }


BAD = ["text named .png", "text named .mp4", "unknown suffix", "truncated video", "zero frames",
       "image renamed .mp4"]


@pytest.mark.parametrize("case", BAD)
def test_bad_file_gives_its_message(case: str, tmp_path: Path, video: Path) -> None:
    path, message = bad_files(tmp_path / "bad", video)[case]
    with pytest.raises(DataError, match=message):
        read_media(path)


def test_size_and_frame_limits(video: Path) -> None:
    with pytest.raises(DataError, match=r"over the limit of 0.001 MB"):
        read_media(video, Limits(max_megabytes=0.001))
    with pytest.raises(DataError, match="longer than the limit of 5 frames"):
        read_media(video, Limits(max_frames=5))
    assert len(read_media(video, Limits(max_frames=16)).frames) == 16


def test_a_video_reads_every_frame_with_its_rate(video: Path) -> None:
    media = read_media(video)
    assert media.is_video and media.frames.shape == (16, 96, 128, 3) and media.frames.dtype == np.uint8
    with av.open(str(video)) as container:
        assert media.fps == pytest.approx(float(container.streams.video[0].average_rate))


def test_large_images_are_shrunk_to_display_size(tmp_path: Path) -> None:
    Image.new("RGB", (1000, 500), (10, 200, 30)).save(tmp_path / "wide.jpg")
    media = read_media(tmp_path / "wide.jpg")
    assert not media.is_video and media.frames.shape == (1, DISPLAY_SIDE // 2, DISPLAY_SIDE, 3)
