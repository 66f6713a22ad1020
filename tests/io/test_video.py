"""Decoding raw videos: a missing file is a DataError naming it, not an OSError."""

from __future__ import annotations

from pathlib import Path

import pytest

from fpar.errors import DataError
from fpar.io.video import decode


def test_decode_names_a_missing_video(tmp_path: Path) -> None:
    missing = tmp_path / "missing.mp4"
    with pytest.raises(DataError, match="missing.mp4: video not found"):
        list(decode(missing, None))


def test_decode_names_an_empty_video(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(DataError, match="empty file"):
        list(decode(empty, None))
