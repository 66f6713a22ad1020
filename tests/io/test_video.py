"""Video and image I/O: a missing or unwritable file is a DataError naming it, not an OSError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fpar.errors import DataError
from fpar.io.video import decode, write_image


def test_decode_names_a_missing_video(tmp_path: Path) -> None:
    missing = tmp_path / "missing.mp4"
    with pytest.raises(DataError, match="missing.mp4: video not found"):
        list(decode(missing, None))


def test_decode_names_an_empty_video(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(DataError, match="empty file"):
        list(decode(empty, None))


def test_a_failed_image_write_names_the_file_and_the_free_space(tmp_path: Path) -> None:
    # OpenCV only returns False (here: no such folder; on a full disk the same), so the message
    # carries the free space that tells a full disk apart
    with pytest.raises(DataError, match=r"missing/0001\.jpg: could not write image \([\d,]+ MiB free there\)"):
        write_image(tmp_path / "missing" / "0001.jpg", np.zeros((4, 4, 3), np.uint8))


def test_frames_over_the_pixel_limit_are_refused_before_conversion(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # a few kB of H.264 can claim frames of any size; the limit reads the header (and each frame)
    from fpar.io import video

    path = tmp_path / "small.mp4"
    video.write_video(path, np.zeros((3, 32, 48, 3), np.uint8), fps=10)
    assert len(list(decode(path, None))) == 3
    monkeypatch.setattr(video, "MAX_PIXELS", 48 * 32 - 1)
    converted = []
    monkeypatch.setattr(video, "resize", lambda image, size: converted.append(image) or image)
    with pytest.raises(DataError, match=r"small\.mp4: 48x32 frames are over the limit of 0\.001535 megapixels"):
        list(decode(path, None))
    assert not converted
