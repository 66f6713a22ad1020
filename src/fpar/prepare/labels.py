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

Instances are numbered per (user, label) 1, 2, ... in the file's row order, so the numbering does
not depend on sharding or on the order jobs finish in.
"""

from __future__ import annotations

import csv
import glob
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from fpar.data.layout import LABELS_NAME
from fpar.errors import DataError

REQUIRED_COLUMNS = ("video", "user", "label")
SEGMENT_COLUMNS = ("start", "end")


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
    line: int  # line of the labels file, for messages

    @property
    def key(self) -> tuple[str, str, str]:
        return self.user, self.label, self.instance


def read_labels(labels: Path, videos: Path | None = None) -> list[Segment]:
    """Parse and check a labels file; every problem is a DataError naming the file and line."""
    labels = Path(labels)
    if not labels.is_file():
        raise DataError(f"{labels}: labels file not found")
    base = Path(videos) if videos is not None else labels.parent
    with labels.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{labels}:1: header must name the columns {','.join(REQUIRED_COLUMNS)}"
                            f"[,start,end]; missing {', '.join(missing)} (header: {','.join(header)})")
        counts: Counter[tuple[str, str]] = Counter()
        segments = []
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{labels}:{line}: expected {len(header)} fields "
                                f"({','.join(header)}), found {len(row)}")
            fields = {name: cell.strip() for name, cell in zip(header, row)}
            segments.append(_segment(fields, base, counts, f"{labels}:{line}", line))
    if not segments:
        raise DataError(f"{labels}: no samples listed")
    return segments


def _segment(fields: dict[str, str], base: Path, counts: Counter, where: str, line: int) -> Segment:
    for column in ("user", "label"):
        value = fields[column]
        if not value or "/" in value or "\\" in value or value.startswith("."):
            raise DataError(f"{where}: bad {column} {value!r}: it must be a plain, non-empty folder name")
    start, end = (_frame_number(fields.get(c, ""), c, where) for c in SEGMENT_COLUMNS)
    if start is not None and end is not None and end < start:
        raise DataError(f"{where}: end {end} is before start {start}")
    video = _find_video(base, fields["video"], where)
    counts[fields["user"], fields["label"]] += 1
    return Segment(video=video, source=fields["video"], user=fields["user"], label=fields["label"],
                   instance=str(counts[fields["user"], fields["label"]]), start=start or 0, end=end,
                   line=line)


def _frame_number(text: str, column: str, where: str) -> int | None:
    if not text:
        return None
    if not text.isdigit():
        raise DataError(f"{where}: {column} must be a frame number >= 0, got {text!r}")
    return int(text)


def _find_video(base: Path, name: str, where: str) -> Path:
    if not name:
        raise DataError(f"{where}: empty video path")
    path = base / name
    if path.is_file():
        return path
    candidates = sorted(p for p in path.parent.glob(f"{glob.escape(path.name)}.*") if p.is_file()) \
        if path.parent.is_dir() else []
    if len(candidates) == 1:
        return candidates[0]
    found = f" (several files match: {', '.join(p.name for p in candidates)})" if candidates else ""
    raise DataError(f"{where}: video {name!r} not found at {path}{found}")


def resolve_inputs(videos: Path, labels: Path | None = None) -> tuple[Path, Path | None]:
    """(labels file, videos folder or None) from the CLI's inputs.

    `videos` is either a labels file (video paths relative to it) or a folder of videos, whose
    labels file is `labels` or, by default, the folder's own labels.csv.
    """
    videos = Path(videos)
    if videos.is_dir():
        labels = Path(labels) if labels is not None else videos / LABELS_NAME
        if not labels.is_file():
            raise DataError(f"{labels}: labels file not found (a videos folder needs --labels FILE)")
        return labels, videos
    if labels is not None:
        raise DataError(f"{videos}: --labels goes with a folder of videos, not with a labels file")
    if not videos.is_file():
        raise DataError(f"{videos}: no such labels file or videos folder")
    return videos, None
