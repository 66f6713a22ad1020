"""Labels files: instance numbering, segments, and errors that name the file and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fpar.errors import DataError
from fpar.io.labels import read_labels, resolve_inputs


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
    ("video,user,label,start,end\nv/a.mp4,S1,take,\u00b2,4\n", ":2: start must be a frame number"),  # "²".isdigit()
    ('video,user,label\nv/a.mp4,S1,"take\ncup"\n', ":3: bad label 'take\\ncup'"),  # the journal would lose it
    ("video,user,label\nv/a.mp4,S\x071,take\n", ":2: bad user"),
])
def test_bad_rows_name_the_file_and_line(folder: Path, text: str, message: str) -> None:
    path = _labels(folder, text)
    with pytest.raises(DataError, match=re.escape(f"{path}{message}")):
        read_labels(path)


def _gtea(folder: Path, text: str, name: str = "S1_Cheese_C1.txt") -> Path:
    (folder / "ann").mkdir(exist_ok=True)
    (folder / "v" / "S1_Cheese_C1.mp4").write_bytes(b"")
    (folder / "ann" / name).write_text(text)
    return folder / "ann"


def test_gtea_annotations_become_segments_of_the_file_named_video(folder: Path) -> None:
    annotations = _gtea(folder, "<take><bread> (403-449) [1]\n\n<stir><cup> (1-9) [2]\n"
                                "<take> < bread > ( 500 - 510 )\n<pour><mustard,hotdog,bread> (12-20)\n")
    segments = read_labels(annotations, folder / "v")
    assert [(s.key, s.start, s.end) for s in segments] == [
        (("S1", "take_bread", "1"), 402, 448),  # GTEA counts frames from 1, labels from 0
        (("S1", "stir_spoon,cup", "1"), 0, 8),  # GTEA61's name for stir_cup
        (("S1", "take_bread", "2"), 499, 509),
        (("S1", "pour_mustard,hotdog,bread", "1"), 11, 19)]
    assert {s.video for s in segments} == {folder / "v" / "S1_Cheese_C1.mp4"}
    assert segments[0].source == "S1_Cheese_C1"
    assert resolve_inputs(folder / "v", annotations) == (annotations, folder / "v")
    (folder / "v" / "S1_Cheese_C1.txt").write_text("<take><bread> (1-5)\n")  # beside the videos: found
    assert resolve_inputs(folder / "v") == (folder / "v", folder / "v")
    assert [s.key for s in read_labels(folder / "v", folder / "v")] == [("S1", "take_bread", "1")]


@pytest.mark.parametrize(("text", "message"), [
    ("<take><bread> (1-5) [1]\ntake bread 6-9\n", ":2: expected '<verb><object> (start-end)'"),
    ("<take><bread> (0-5)\n", ":1: GTEA frame numbers count from 1"),
    ("<take><bread> (9-5)\n", ":1: end 5 is before start 9"),
    ("<take><bread> (1-5)\n<put><bread> (1-x)\n", ":2: expected"),
])
def test_bad_gtea_lines_name_the_file_and_line(folder: Path, text: str, message: str) -> None:
    annotations = _gtea(folder, text)
    with pytest.raises(DataError, match=re.escape(f"{annotations / 'S1_Cheese_C1.txt'}{message}")):
        read_labels(annotations, folder / "v")


def test_gtea_annotations_of_an_unknown_video_name_the_file(folder: Path) -> None:
    annotations = _gtea(folder, "<take><bread> (1-5)\n", name="S2_Tea_C1.txt")
    with pytest.raises(DataError, match=re.escape(f"{annotations / 'S2_Tea_C1.txt'}:1: video 'S2_Tea_C1' not found")):
        read_labels(annotations, folder / "v")


def test_a_labels_file_with_a_byte_order_mark_is_read(folder: Path) -> None:
    path = folder / "labels.csv"
    path.write_bytes("video,user,label\nv/a.mp4,S1,take\n".encode("utf-8-sig"))  # as Excel saves CSV UTF-8
    assert [s.key for s in read_labels(path)] == [("S1", "take", "1")]


def test_gtea_annotations_with_a_byte_order_mark_are_read(folder: Path) -> None:
    annotations = _gtea(folder, "")
    (annotations / "S1_Cheese_C1.txt").write_bytes("<take><bread> (1-5)\n".encode("utf-8-sig"))
    assert [s.key for s in read_labels(annotations, folder / "v")] == [("S1", "take_bread", "1")]


@pytest.mark.parametrize(("content", "reason"), [
    (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41", "it holds binary data (a video file?)"),
    ("video,user,label\nv/a.mp4,S1,caf\u00e9\n".encode("latin-1"), "not UTF-8 text"),
])
def test_a_file_that_is_not_a_utf8_labels_csv_is_one_data_error(folder: Path, content: bytes, reason: str) -> None:
    path = folder / "v" / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(f"{path} is not a labels CSV (or folder of videos): {reason}")):
        read_labels(path)


def test_videos_named_without_suffix_are_found_with_one_listing_of_their_folder(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """4,000 annotation files, one video each, two segments each: the folder is listed once, not
    globbed per segment; a name is the one file it extends with `.suffix`, annotations aside."""
    import os

    import fpar.io.labels as labels_module

    (tmp_path / "S1_v.x.mp4").write_bytes(b"")  # a stem with a dot
    (tmp_path / "S1_v.x.txt").write_text("<take><cup> (1-5)\n")
    (tmp_path / "S2_w.mp4").write_bytes(b"")
    (tmp_path / "S2_w.avi").write_bytes(b"")
    (tmp_path / "S2_w.txt").write_text("<take><cup> (1-5)\n")
    for i in range(4000):
        (tmp_path / f"S3_{i:04d}.mp4").write_bytes(b"")
        (tmp_path / f"S3_{i:04d}.txt").write_text("<take><cup> (1-5)\n<put><cup> (6-9)\n")
    listings = []
    scandir = os.scandir
    monkeypatch.setattr(labels_module.os, "scandir", lambda p: listings.append(p) or scandir(p))
    (tmp_path / "S2_w.txt").unlink()
    segments = read_labels(tmp_path)
    assert len(segments) == 1 + 8000 and len(listings) == 2  # the annotation files (glob), the videos
    assert segments[0].video == tmp_path / "S1_v.x.mp4"
    assert segments[-1].video == tmp_path / "S3_3999.mp4"
    (tmp_path / "S2_w.txt").write_text("<take><cup> (1-5)\n")
    with pytest.raises(DataError, match=r"video 'S2_w' not found at .* \(several files match: S2_w.avi, S2_w.mp4\)"):
        read_labels(tmp_path)


def test_a_label_longer_than_a_folder_name_may_be_is_refused(folder: Path) -> None:
    labels = _labels(folder, f"video,user,label\nv/a.mp4,S1,{'x' * 256}\n")
    with pytest.raises(DataError, match=re.escape(f"{labels}:2: label is 256 bytes long")):
        read_labels(labels)


def test_a_field_over_the_csv_limit_is_one_data_error(folder: Path) -> None:
    path = _labels(folder, 'video,user,label\n"' + "x" * 200_000 + '",S1,take\n')
    with pytest.raises(DataError, match=re.escape(f"{path}: not a valid CSV (field larger than field limit")):
        read_labels(path)


def test_invisible_characters_that_break_no_line_are_kept(folder: Path) -> None:
    # a no-break space (Excel writes them) and the zero-width non-joiner Persian spelling needs
    path = _labels(folder, "video,user,label\nv/a.mp4,S1,take\u00a0cup\nv/b.mp4,S1,\u0645\u06cc\u200c\u062e\u0648\u0631\u062f\n")
    assert [s.label for s in read_labels(path)] == ["take\u00a0cup", "\u0645\u06cc\u200c\u062e\u0648\u0631\u062f"]
