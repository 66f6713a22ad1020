"""Untrusted input: every kind of bad file is one DataError naming it and saying what is wrong."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from cam_testkit import BAD_FILES, bad_files
from PIL import Image

from fpar.errors import DataError
from fpar.explain.limits import Limits
from fpar.explain.media import DISPLAY_SIDE, read_media


@pytest.mark.parametrize("case", BAD_FILES)
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


def _encode(path: Path, width: int, height: int, frames: int, container_format: str | None = None,
            title: str | None = None) -> None:
    with av.open(str(path), "w", format=container_format) as container:
        if title is not None:
            container.metadata["title"] = title
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.full((height, width, 3), 40 * i, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def test_a_video_that_changes_size_midway_is_shown_at_its_first_size(tmp_path: Path) -> None:
    # two MPEG-TS pieces of different sizes, joined: a valid stream whose frames stop matching
    for index, (width, height) in enumerate(((64, 48), (96, 96))):
        _encode(tmp_path / f"{index}.ts", width, height, frames=4, container_format="mpegts")
    joined = tmp_path / "joined.mp4"  # named .mp4, as the review found it; FFmpeg reads it by content
    joined.write_bytes((tmp_path / "0.ts").read_bytes() + (tmp_path / "1.ts").read_bytes())
    media = read_media(joined)
    assert media.frames.shape == (8, 48, 64, 3)


def test_a_title_tag_that_is_not_utf8_does_not_stop_reading(tmp_path: Path) -> None:
    video = tmp_path / "tagged.mp4"
    _encode(video, 64, 48, frames=3, title="QQQQQQQQ")
    data = video.read_bytes()
    assert data.count(b"QQQQQQQQ") == 1  # the tag is there to spoil
    video.write_bytes(data.replace(b"QQQQQQQQ", b"\xff\xfeQQQQQQ"))  # Latin-1 bytes, say
    media = read_media(video)
    assert media.frames.shape == (3, 48, 64, 3) and media.fps == pytest.approx(10)
