"""The manifest store: which samples are done, from which source, as cheap to update at 10,000 rows
as at 10.

During a run every finished sample appends one line to ``ROOT/.manifest.journal`` (under a file
lock, so workers and shards on one file system can share a root); a run folds the journal into
``manifest.csv`` (one atomic rewrite) when it ends, and readers see manifest.csv + journal. An
update therefore costs one short append whatever the manifest's size; a killed run's journal is
read, then folded, by the next run. A line cut short by a kill (no newline yet) is ignored.

A sample is complete when the manifest says ok, names the same source (video path, segment, and
the same video file: size and mtime, or where only the mtime differs, the same SHA-1) and all its
folders exist; anything else is redone.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from fpar.data.layout import (COURSE, MANIFEST_COLUMNS, MANIFEST_JOURNAL_NAME, MANIFEST_LOCK_NAME, MANIFEST_NAME,
                              PREPARE_SETTINGS_NAME, QUALITY_NAME, ManifestRows, instance_order, manifest_rows,
                              read_manifest)
from fpar.errors import DataError
from fpar.io.atomic import write_atomic
from fpar.io.labels import Segment
from fpar.prepare.locks import locked

FINGERPRINT_COLUMNS = ("video_bytes", "video_mtime_ns", "video_sha1")
REMOVED = "removed"  # journal status of a sample whose labels row is gone; never in manifest.csv


@dataclass(frozen=True)
class SampleResult:
    """How one sample went, as its manifest row records it."""

    segment: Segment
    frames: int
    flows: int
    error: str = ""  # empty: ok
    video_id: dict[str, str] = field(default_factory=dict)  # the video's fingerprint (`identify`) when read

    @property
    def ok(self) -> bool:
        return not self.error

    def row(self) -> dict[str, str]:
        user, label, instance = self.segment.key
        return {"user": user, "class": label, "instance": instance, "frames": str(self.frames),
                "flows": str(self.flows), "status": "ok" if self.ok else "failed", "error": self.error,
                **source(self.segment), **dict.fromkeys(FINGERPRINT_COLUMNS, ""), **self.video_id}


class ManifestStore:
    """manifest.csv and its journal in one prepared root (see the module doc)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.journal = self.root / MANIFEST_JOURNAL_NAME
        self.lock = self.root / MANIFEST_LOCK_NAME

    def rows(self) -> ManifestRows:
        """Every sample's current row: manifest.csv updated by the journal."""
        with locked(self.lock):
            return self._rows()

    def record(self, rows: list[dict[str, str]]) -> None:
        """Append these rows (one line each) to the journal."""
        text = "".join(_line(row) for row in rows)
        with locked(self.lock):
            _append(self.journal, text.encode())

    def remove(self, rows: list[dict[str, str]]) -> None:
        """Drop these samples from the manifest (their labels rows are gone)."""
        self.record([{**row, "status": REMOVED} for row in rows])

    def fold(self) -> None:
        """Rewrite manifest.csv with the journal's rows and delete the journal (and the lock file,
        which the next writer makes again). Nothing is rewritten when there is no journal."""
        with locked(self.lock, remove=True):
            if not self.journal.exists():
                return
            rows = self._rows()
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, MANIFEST_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows[k] for k in sorted(rows, key=_row_order))
            write_atomic(self.root / MANIFEST_NAME, buffer.getvalue())
            self.journal.unlink()

    def remove_temp_files(self) -> None:
        """Delete the half-written files a killed writer left (`atomic_path` temporaries); under the
        lock, so no live writer of manifest.csv or prepare.json is mid-file."""
        with locked(self.lock):
            for name in (MANIFEST_NAME, PREPARE_SETTINGS_NAME, QUALITY_NAME):
                for temp in self.root.glob(f".{name}.*.tmp"):
                    temp.unlink(missing_ok=True)

    def _rows(self) -> ManifestRows:
        rows = read_manifest(self.root)
        rows.update(self._journal_rows())
        return {key: row for key, row in rows.items() if row["status"] != REMOVED}

    def _journal_rows(self) -> ManifestRows:
        try:
            text = self.journal.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{self.journal}: unreadable ({exc}); delete it and re-run fpar prepare") from exc
        complete = text[:text.rfind("\n") + 1]  # a line cut short by a kill is not a row
        return manifest_rows(complete.splitlines(), self.journal, first_line=1)


def _line(row: dict[str, str]) -> str:
    """One CSV line; line breaks inside values (none expected) become spaces so a row is one line."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([" ".join(row[c].splitlines()) for c in MANIFEST_COLUMNS])
    return buffer.getvalue()


def _append(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from exc


def _row_order(key: tuple[str, str, str]) -> tuple:
    user, label, instance = key
    return user, label, instance_order(instance)


def source(segment: Segment) -> dict[str, str]:
    """The manifest's record of where a sample comes from: video as written, segment."""
    return {"video": segment.source, "start": str(segment.start),
            "end": "" if segment.end is None else str(segment.end)}


def fingerprint(video: Path) -> dict[str, str]:
    """A cheap identity of a video file: its size and modification time (empty if it is missing)."""
    try:
        stat = Path(video).stat()
    except OSError:
        return {"video_bytes": "", "video_mtime_ns": ""}
    return {"video_bytes": str(stat.st_size), "video_mtime_ns": str(stat.st_mtime_ns)}


def digest(video: Path) -> str:
    """SHA-1 of a video file's bytes ("" if it cannot be read)."""
    sha = hashlib.sha1()
    try:
        with open(video, "rb") as handle:
            while chunk := handle.read(1 << 20):
                sha.update(chunk)
    except OSError:
        return ""
    return sha.hexdigest()


def identify(video: Path) -> dict[str, str]:
    """The manifest's record of a video: size, mtime and SHA-1."""
    return {**fingerprint(video), "video_sha1": digest(video)}


def is_complete(root: Path, segment: Segment, manifest: ManifestRows, digests: dict[Path, str]) -> bool:
    """Done earlier with the same source (`same_video`), manifest ok, every folder of the sample there.
    `digests` caches SHA-1s by video."""
    return (_done_from(segment, manifest) and all(p.is_dir() for p in COURSE.sample_roots(root, *segment.key))
            and same_video(manifest[segment.key], segment.video, digests))


def _done_from(segment: Segment, manifest: ManifestRows) -> bool:
    row = manifest.get(segment.key)
    return (row is not None and row["status"] == "ok"
            and all(row[k] == v for k, v in source(segment).items()))


def same_video(row: dict[str, str], video: Path, digests: dict[Path, str]) -> bool:
    """The video file is the one the manifest row recorded: same size, and same mtime or else the
    same SHA-1 (read only then: a video rewritten with the same bytes is the same video)."""
    now = fingerprint(video)
    if not now["video_bytes"] or row["video_bytes"] != now["video_bytes"]:
        return False
    if row["video_mtime_ns"] == now["video_mtime_ns"]:
        return True
    if video not in digests:
        digests[video] = digest(video)
    return bool(row["video_sha1"]) and digests[video] == row["video_sha1"]


def video_changed(segment: Segment, manifest: ManifestRows, digests: dict[Path, str]) -> bool:
    """The manifest says this sample was done from the same video path and segment, but the video
    file differs (replaced or re-encoded since)."""
    return _done_from(segment, manifest) and not same_video(manifest[segment.key], segment.video, digests)
