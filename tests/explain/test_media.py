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
