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
