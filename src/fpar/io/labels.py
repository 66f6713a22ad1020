"""The input list of `fpar prepare`: which video (or segment of a video) is which sample.

A labels file is CSV with a header row and the columns ``video,user,label`` and optionally
``start,end``:

* ``video``: path of the video file, relative to the labels file's folder (or to the videos
  folder when one is given); the suffix may be left out if exactly one file has that stem
  (GTEA's annotations name videos without one).
* ``user``, ``label``: the sample's user (e.g. S1) and class (e.g. take_cup); they become folder
  names, so they must not contain path separators.
* ``start``, ``end``: first and last frame of the segment, both included, counted from 0 in
  decoding order. One video may hold many labelled segments, which is how raw GTEA is annotated.
  Left empty (or the columns absent) the segment is the whole video.

Raw GTEA's own annotations are read too (`read_gtea_annotations`): one text file per video, named
after it (``S1_Cheese_C1.txt`` for ``S1_Cheese_C1.mp4``; the user is the name's first two
characters), one segment a line: ``<verb><object> (start-end) [...]``, frames numbered from 1.

Instances are numbered per (user, label) 1, 2, ... in the file's row order (annotation files in
name order), so the numbering does not depend on sharding or on the order jobs finish in.
"""

from __future__ import annotations

import csv
import io
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from fpar.data.layout import LABELS_NAME
from fpar.errors import DataError

REQUIRED_COLUMNS = ("video", "user", "label")
SEGMENT_COLUMNS = ("start", "end")

# `<verb><object[,object...]> (start-end)`, then anything (GTEA ends its lines with `[n]`)
GTEA_LINE = re.compile(r"<(?P<verb>[^<>]+)>\s*<(?P<objects>[^<>]+)>\s*\(\s*(?P<start>\d+)\s*-\s*(?P<end>\d+)\s*\)")
NOT_VIDEOS = (".txt", ".csv")  # annotations may lie beside their videos, under the same stem
NAME_MAX = 255  # bytes in a file or folder name on common file systems (ext4, APFS, NTFS)
GTEA_RENAMES = {"stir_cup": "stir_spoon,cup"}  # GTEA61's name for the class (as the reference builds it)


@dataclass(frozen=True)
class Segment:
    """One sample to prepare: a labelled stretch of a video, and the instance it becomes."""

    video: Path  # resolved path
    source: str  # the video as written in the labels file (what the manifest records)
    user: str
    label: str
    instance: str
    start: int  # first frame, from 0
    end: int | None  # last frame, included; None: to the end of the video
    origin: str = ""  # where the labels file lists it ("file:line"), for messages
    numbered_from: int = 0  # how the user's file counts frames (GTEA annotations: from 1), for messages

    @property
    def key(self) -> tuple[str, str, str]:
        return self.user, self.label, self.instance


def read_labels(labels: Path, videos: Path | None = None) -> list[Segment]:
    """Parse and check a labels file; every problem is a DataError naming the file and line.

    `labels` may also be GTEA annotations (a folder of ``.txt`` files, or one): see
    `read_gtea_annotations`.
    """
    try:
        return _read_labels(Path(labels), videos)
    except OSError as exc:
        raise DataError(f"{exc.filename or labels}: cannot read ({exc.strerror or exc})") from exc
    except csv.Error as exc:  # e.g. a field over the csv module's size limit
        raise DataError(f"{labels}: not a valid CSV ({exc})") from exc


def _read_labels(labels: Path, videos: Path | None) -> list[Segment]:
    if labels.is_dir() or labels.suffix.lower() == ".txt":
        default = labels if labels.is_dir() else labels.parent  # videos beside the annotations
        return read_gtea_annotations(labels, Path(videos) if videos is not None else default)
    if not labels.is_file():
        raise DataError(f"{labels}: labels file not found")
    base = Path(videos) if videos is not None else labels.parent
    with labels.open(newline="", encoding="utf-8-sig") as handle:  # -sig: Excel writes a byte-order mark
        reader = csv.reader(io.StringIO(_read_text(labels, handle)))
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{labels}:1: header must name the columns {','.join(REQUIRED_COLUMNS)}"
                            f"[,start,end]; missing {', '.join(missing)} (header: {','.join(header)})")
        counts: Counter[tuple[str, str]] = Counter()
        finder = VideoFinder(base)
        segments = []
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{labels}:{line}: expected {len(header)} fields "
                                f"({','.join(header)}), found {len(row)}")
            fields = {name: cell.strip() for name, cell in zip(header, row)}
            segments.append(_segment(fields, finder, counts, f"{labels}:{line}"))
    if not segments:
        raise DataError(f"{labels}: no samples listed")
    return segments


NOT_TEXT_SNIFF = 8192  # bytes read to tell a binary file (a video) from a labels file


def _read_text(labels: Path, handle) -> str:
    """The whole text of an open labels file; DataError if it is binary or not UTF-8."""
    with labels.open("rb") as raw:
        head = raw.read(NOT_TEXT_SNIFF)
    if b"\0" in head:
        raise DataError(f"{labels} is not a labels CSV (or folder of videos): it holds binary data (a video "
                        f"file?); pass the labels.csv, or the folder of videos with --labels")
    try:
        return handle.read()
    except UnicodeDecodeError as exc:
        raise DataError(f"{labels} is not a labels CSV (or folder of videos): not UTF-8 text ({exc.reason} "
                        f"at byte {exc.start}); save it as UTF-8 CSV") from exc


def read_gtea_annotations(annotations: Path, videos: Path) -> list[Segment]:
    """Segments from GTEA's annotation files: a folder of them (every ``*.txt``, in name order) or one.

    Each file names its video (same stem, any suffix, in `videos`) and user (the stem's first two
    characters, e.g. S1). Each non-blank line is ``<verb><object> (start-end)``, optionally followed
    by anything (GTEA's ``[n]``); the class is ``verb_object`` (``stir_cup`` becomes GTEA61's
    ``stir_spoon,cup``); start and end are frame numbers counted from 1, both included.
    Any other line is a DataError naming the file and line.
    """
    annotations = Path(annotations)
    if annotations.is_dir():
        files = sorted(p for p in annotations.glob("*.txt") if p.is_file())
        if not files:
            raise DataError(f"{annotations}: no GTEA annotation files (*.txt) in this folder")
    elif annotations.is_file():
        files = [annotations]
    else:
        raise DataError(f"{annotations}: annotation file or folder not found")
    counts: Counter[tuple[str, str]] = Counter()
    finder = VideoFinder(videos)
    segments = []
    for path in files:
        for line, text in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), start=1):
            if not text.strip():
                continue
            where = f"{path}:{line}"
            match = GTEA_LINE.match(text.strip())
            if match is None:
                raise DataError(f"{where}: expected '<verb><object> (start-end)', got {text.strip()!r}")
            start, end = int(match["start"]), int(match["end"])
            if start < 1:
                raise DataError(f"{where}: GTEA frame numbers count from 1, got start {start}")
            if end < start:
                raise DataError(f"{where}: end {end} is before start {start}")
            label = f"{match['verb'].strip()}_{match['objects'].strip()}"
            fields = {"video": path.stem, "user": path.stem[:2], "label": GTEA_RENAMES.get(label, label),
                      "start": str(start - 1), "end": str(end - 1)}
            segments.append(_segment(fields, finder, counts, where, numbered_from=1))
    if not segments:
        raise DataError(f"{annotations}: no annotated segments")
    return segments


def _segment(fields: dict[str, str], finder: VideoFinder, counts: Counter, where: str,
             numbered_from: int = 0) -> Segment:
    for column in ("user", "label"):
        value = fields[column]
        if not value or "/" in value or "\\" in value or value.startswith(".") or _breaks_a_line(value):
            raise DataError(f"{where}: bad {column} {value!r}: it must be a plain, non-empty folder name "
                            "(no line breaks or control characters)")
        if len(value.encode()) > NAME_MAX:
            raise DataError(f"{where}: {column} is {len(value.encode())} bytes long; it becomes a folder name, "
                            f"which file systems limit to {NAME_MAX} bytes")
    start, end = (_frame_number(fields.get(c, ""), c, where) for c in SEGMENT_COLUMNS)
    if start is not None and end is not None and end < start:
        raise DataError(f"{where}: end {end} is before start {start}")
    video = finder.find(fields["video"], where)
    counts[fields["user"], fields["label"]] += 1
    return Segment(video=video, source=fields["video"], user=fields["user"], label=fields["label"],
                   instance=str(counts[fields["user"], fields["label"]]), start=start or 0, end=end,
                   origin=where, numbered_from=numbered_from)


def _breaks_a_line(value: str) -> bool:
    """Whether `value` holds a control character or a Unicode line or paragraph separator: what
    `str.splitlines` splits on, so the manifest's journal could not keep it on one line. Other
    invisible characters (a no-break space, the zero-width non-joiner some scripts need) are fine."""
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value)


def _frame_number(text: str, column: str, where: str) -> int | None:
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):  # "²".isdigit() is True, int("²") fails
        raise DataError(f"{where}: {column} must be a frame number >= 0, got {text!r}")
    return int(text)


class VideoFinder:
    """Finds the videos a labels file names, listing each folder once.

    A video named without a suffix is the one file whose name is the given name plus ``.suffix``
    (annotations and CSVs lying beside it do not count). Listing the folder once, instead of a glob
    per segment, keeps reading GTEA annotations for thousands of videos to seconds.
    """

    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self._folders: dict[Path, tuple[set[str], dict[str, list[str]]]] = {}

    def find(self, name: str, where: str) -> Path:
        if not name:
            raise DataError(f"{where}: empty video path")
        path = self.base / name
        files, by_prefix = self._listing(path.parent)
        if path.name in files:
            return path
        candidates = sorted(by_prefix.get(path.name, []))
        if len(candidates) == 1:
            return path.parent / candidates[0]
        found = f" (several files match: {', '.join(candidates)})" if candidates else ""
        raise DataError(f"{where}: video {name!r} not found at {path}{found}")

    def _listing(self, folder: Path) -> tuple[set[str], dict[str, list[str]]]:
        """(file names, video file names by every name they extend with ``.suffix``) of `folder`."""
        if folder not in self._folders:
            try:
                files = {entry.name for entry in os.scandir(folder) if entry.is_file()}
            except OSError:
                files = set()
            by_prefix: dict[str, list[str]] = {}
            for file in files:
                if Path(file).suffix.lower() in NOT_VIDEOS:
                    continue
                parts = file.split(".")
                for cut in range(1, len(parts)):
                    by_prefix.setdefault(".".join(parts[:cut]), []).append(file)
            self._folders[folder] = files, by_prefix
        return self._folders[folder]


def resolve_inputs(videos: Path, labels: Path | None = None) -> tuple[Path, Path | None]:
    """(labels, videos folder or None) from the CLI's inputs.

    `videos` is either a labels file (video paths relative to it) or a folder of videos. A folder's
    labels are `labels` (a labels.csv, or GTEA annotations: a folder of ``.txt`` files or one) or,
    by default, the folder's own labels.csv, else the GTEA annotation files lying in it.
    """
    videos = Path(videos)
    if videos.is_dir():
        if labels is None:
            labels = videos / LABELS_NAME
            if not labels.is_file() and any(videos.glob("*.txt")):
                labels = videos
        if not Path(labels).exists():
            raise DataError(f"{labels}: labels not found (a videos folder needs --labels FILE, or GTEA "
                            f"annotations: --labels FOLDER of .txt files)")
        return Path(labels), videos
    if labels is not None:
        raise DataError(f"{videos}: --labels goes with a folder of videos, not with a labels file")
    if not videos.is_file():
        raise DataError(f"{videos}: no such labels file or videos folder")
    return videos, None
