"""Labels files: instance numbering, segments, and errors that name the file and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fpar.errors import DataError
from fpar.prepare.labels import read_labels, resolve_inputs


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "v").mkdir()
    for name in ("a.mp4", "b.mp4", "S1_Cheese.avi"):
        (tmp_path / "v" / name).write_bytes(b"")
    return tmp_path


def _labels(folder: Path, text: str) -> Path:
    path = folder / "labels.csv"
    path.write_text(text)
    return path


def test_instances_numbered_per_user_and_class_in_file_order(folder: Path) -> None:
    path = _labels(folder, "video,user,label,start,end\nv/a.mp4,S1,take,,\nv/b.mp4,S1,put,,\n"
                           "v/S1_Cheese,S1,take,10,20\n\nv/b.mp4,S2,take,,\n")
    segments = read_labels(path)
    assert [s.key for s in segments] == [("S1", "take", "1"), ("S1", "put", "1"), ("S1", "take", "2"),
                                         ("S2", "take", "1")]
    assert segments[2].video.name == "S1_Cheese.avi"  # a suffix-less name finds its file
    assert (segments[2].start, segments[2].end, segments[0].end) == (10, 20, None)


def test_folder_of_videos_with_a_labels_file(folder: Path) -> None:
    labels = folder / "my_labels.csv"
    labels.write_text("video,user,label\na.mp4,S1,take\n")
    labels_file, videos = resolve_inputs(folder / "v", labels)
    assert read_labels(labels_file, videos)[0].video == folder / "v" / "a.mp4"


@pytest.mark.parametrize(("text", "message"), [
    ("video,user,label\nv/a.mp4,S1,take\nv/nope.mp4,S1,take\n", ":3: video 'v/nope.mp4' not found"),
    ("video,user,label\nv/a.mp4,S1,take\nv/b.mp4,S1\n", ":3: expected 3 fields"),
    ("video,user,label,start,end\nv/a.mp4,S1,take,5,x\n", ":2: end must be a frame number"),
    ("video,user,label,start,end\nv/a.mp4,S1,take,9,3\n", ":2: end 3 is before start 9"),
    ("video,user,label\nv/a.mp4,S1,../take\n", ":2: bad label"),
    ("video,user\nv/a.mp4,S1\n", ":1: header must name the columns"),
])
def test_bad_rows_name_the_file_and_line(folder: Path, text: str, message: str) -> None:
    path = _labels(folder, text)
    with pytest.raises(DataError, match=re.escape(f"{path}{message}")):
        read_labels(path)
