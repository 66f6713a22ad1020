"""`fpar prepare`: raw videos -> GTEA61's course layout, one job per video, in parallel.

Why it is shaped this way:

* One job per *video*, not per sample: a raw GTEA video holds many labelled segments, and one
  pass of the decoder serves all of them (each segment streams its frames, flow and maps to disk as
  they are decoded, so memory does not grow with the video's length).
* Atomic samples: a sample is written under ``ROOT/.tmp/<user>__<class>__<instance>/`` in the same
  layout, then each of its top folders (frames+maps, flow x, flow y) is renamed into place, then its
  manifest row is written with status ``ok``. A sample is complete only when all its folders exist
  *and* the manifest says ok and names the same source (video, segment, and the video's size and
  mtime, so a video replaced at the same path is redone; where only the mtime differs, a SHA-1 of the
  file decides, so a video rewritten with the same bytes is kept); anything else is removed and redone. So a
  run killed at any moment (even ``kill -9``) resumes with only what is missing.
* The manifest is rewritten whole (temporary file + rename) under a file lock at every sample, so
  workers and the shards of a job array on one file system can share one ``manifest.csv``.
* Sharding takes every N-th video of the labels file; instance numbers come from the labels file
  alone (see `labels.py`), so shards agree on them.
"""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import hashlib
import io
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from tqdm import tqdm

from fpar.data.images import read_image
from fpar.data.layout import (COURSE, MANIFEST_COLUMNS, MANIFEST_LOCK_NAME, MANIFEST_NAME, MAP_THRESHOLD,
                              PREPARE_SETTINGS_NAME, PREPARE_TEMP_NAME, instance_order)
from fpar.errors import DataError, one_line
from fpar.io.atomic import write_atomic
from fpar.options import DEFAULT_FRAME_SIZE, DEFAULT_FLOW, check_flow_method
from fpar.prepare.flow import DEFAULT_BOUND, FlowComputer, quantise, to_gray
from fpar.io.labels import Segment, read_labels
from fpar.prepare.motion_maps import MotionRule, motion_map
from fpar.io.video import Size, decode, write_image

MIN_FRAMES = 2  # one flow needs two frames
FINGERPRINT_COLUMNS = ("video_bytes", "video_mtime_ns", "video_sha1")


@dataclass(frozen=True)
class PrepareSettings:
    """Everything that changes the files written; a root keeps the settings it was made with.

    ``warp=False`` writes plain flow, and motion maps from it (for comparison: under camera motion
    they mark the background too).
    """

    size: Size | None = DEFAULT_FRAME_SIZE
    flow: str = DEFAULT_FLOW
    bound: float = DEFAULT_BOUND
    warp: bool = True
    hand_masks: Path | None = None
    motion: MotionRule = field(default_factory=MotionRule)

    def __post_init__(self) -> None:
        check_flow_method(self.flow)
        if self.bound <= 0:
            raise DataError(f"flow bound must be > 0, got {self.bound}")
        if self.hand_masks is not None and not Path(self.hand_masks).is_dir():
            raise DataError(f"{self.hand_masks}: hand-mask folder not found")

    def to_json(self) -> dict:
        return {"size": list(self.size) if self.size else None, "flow": self.flow, "bound": self.bound,
                "warp": self.warp, "hand_masks": str(self.hand_masks) if self.hand_masks else None,
                "motion": asdict(self.motion)}

    @classmethod
    def from_json(cls, data: dict) -> PrepareSettings:
        return cls(size=tuple(data["size"]) if data["size"] else None, flow=data["flow"],
                   bound=data["bound"], warp=data["warp"],
                   hand_masks=Path(data["hand_masks"]) if data["hand_masks"] else None,
                   motion=MotionRule(**data["motion"]))


@dataclass(frozen=True)
class VideoJob:
    """One video and the segments of it that this run must prepare."""

    video: Path
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class SampleResult:
    segment: Segment
    frames: int
    flows: int
    error: str = ""  # empty: ok
    video_id: dict[str, str] = field(default_factory=dict)  # the video's fingerprint (`identify`) when read

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class PrepareReport:
    """What a run did; `failed` lists (video, sample id, reason)."""

    samples: int = 0
    skipped: int = 0
    changed: int = 0  # of those to do: done before, but their video changed since
    done: int = 0
    frames: int = 0
    seconds: float = 0.0
    failed: list[tuple[Path, str, str]] = field(default_factory=list)

    def summary(self) -> list[str]:
        """Lines for the terminal: counts, then one line per failed sample with path and reason."""
        rate = self.frames / self.seconds if self.seconds else 0.0
        changed = f" ({self.changed} redone because their video changed)" if self.changed else ""
        lines = [f"{_plural(self.samples, 'sample')}: {self.done} prepared{changed} ({self.frames} frames, "
                 f"{rate:.1f} frames/s), {self.skipped} already complete, {len(self.failed)} failed"]
        lines += [f"  failed {sample} ({video}): {reason.removeprefix(f'{video}: ')}"
                  for video, sample, reason in self.failed]
        return lines


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# ---- settings, shards, manifest -----------------------------------------------------------------

def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` (1-based K of N) -> (1, 4): this run takes videos i with ``i % 4 == 1``."""
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise DataError(f"shard must be K/N with 1 <= K <= N, got {text!r}")
    return int(k) - 1, int(n)


def load_settings(root: Path) -> PrepareSettings | None:
    path = Path(root) / PREPARE_SETTINGS_NAME
    if not path.is_file():
        return None
    try:
        return PrepareSettings.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: unreadable prepare settings ({exc}); delete it to start over") from exc


def _claim_root(root: Path, settings: PrepareSettings) -> None:
    """Record the settings in a new root; refuse to mix settings in an existing one."""
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: --out must be a folder (new or prepared before), but this is a file")
    previous = load_settings(root)
    if previous is None:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"{root}: cannot create the output folder ({exc.strerror or exc})") from exc
        write_atomic(root / PREPARE_SETTINGS_NAME, json.dumps(settings.to_json(), indent=2) + "\n")
    elif previous.to_json() != settings.to_json():
        old, new = previous.to_json(), settings.to_json()
        changed = [f"{k}: root has {_setting(old[k])}, this run asks {_setting(v)}" for k, v in new.items()
                   if old[k] != v]
        raise DataError(f"{root / PREPARE_SETTINGS_NAME}: this root was prepared with other settings "
                        f"({'; '.join(changed)}); use a new --out folder or delete this one")


def _setting(value: object) -> str:
    """A setting as the user gives it: 320x240, dis, none."""
    if isinstance(value, list) and len(value) == 2:
        return f"{value[0]}x{value[1]}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return "native" if value is None else str(value)


def read_manifest(root: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    """The manifest's rows by (user, class, instance); empty if there is none yet."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != MANIFEST_COLUMNS:
            raise DataError(f"{path}: header must be {','.join(MANIFEST_COLUMNS)}")
        return {(r["user"], r["class"], r["instance"]): r for r in reader}


@contextmanager
def _manifest_lock(root: Path) -> Iterator[None]:
    with open(Path(root) / MANIFEST_LOCK_NAME, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def record(root: Path, results: list[SampleResult]) -> None:
    """Write these samples' rows into the manifest (read, update, atomic rewrite, under a lock)."""
    _update_manifest(root, {result.segment.key: _row(result) for result in results})


def _update_manifest(root: Path, updates: dict[tuple[str, str, str], dict[str, str]]) -> None:
    with _manifest_lock(root):
        rows = read_manifest(root)
        rows.update(updates)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows[k] for k in sorted(rows, key=_row_order))
        write_atomic(Path(root) / MANIFEST_NAME, buffer.getvalue())


def _row(result: SampleResult) -> dict[str, str]:
    user, label, instance = result.segment.key
    return {"user": user, "class": label, "instance": instance, "frames": str(result.frames),
            "flows": str(result.flows), "status": "ok" if result.ok else "failed",
            "error": result.error, **_source(result.segment), **dict.fromkeys(FINGERPRINT_COLUMNS, ""),
            **result.video_id}


def _source(segment: Segment) -> dict[str, str]:
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


def _row_order(key: tuple[str, str, str]) -> tuple:
    user, label, instance = key
    return user, label, instance_order(instance)


def is_complete(root: Path, segment: Segment, manifest: dict, digests: dict[Path, str] | None = None) -> bool:
    """Done earlier with the same source (video, segment, and the same video file: `same_video`):
    manifest says ok and every folder of the sample exists. `digests` caches SHA-1s by video."""
    return (_done_from(segment, manifest) and all(p.is_dir() for p in COURSE.sample_roots(root, *segment.key))
            and same_video(manifest[segment.key], segment.video, digests))


def _done_from(segment: Segment, manifest: dict) -> bool:
    row = manifest.get(segment.key)
    return (row is not None and row["status"] == "ok"
            and all(row[k] == v for k, v in _source(segment).items()))


def same_video(row: dict[str, str], video: Path, digests: dict[Path, str] | None = None) -> bool:
    """The video file is the one the manifest row recorded: same size, and same mtime or else the
    same SHA-1 (read only then: a video rewritten with the same bytes is the same video)."""
    now = fingerprint(video)
    if not now["video_bytes"] or row["video_bytes"] != now["video_bytes"]:
        return False
    if row["video_mtime_ns"] == now["video_mtime_ns"]:
        return True
    digests = {} if digests is None else digests
    if video not in digests:
        digests[video] = digest(video)
    return bool(row["video_sha1"]) and digests[video] == row["video_sha1"]


def video_changed(segment: Segment, manifest: dict, digests: dict[Path, str] | None = None) -> bool:
    """The manifest says this sample was done from the same video path and segment, but the video
    file differs (replaced or re-encoded since)."""
    return _done_from(segment, manifest) and not same_video(manifest[segment.key], segment.video, digests)


# ---- one sample, one video ----------------------------------------------------------------------

class HandMasks:
    """Optional per-frame masks of regions to keep out of the camera estimate (e.g. hands).

    Layout: ``<folder>/<video stem>/<anything><frame index>.png``, frame index counted from 0 like
    `start`/`end` in the labels file; white (> `MAP_THRESHOLD`) = exclude. Frames without a mask use
    all pixels.
    """

    def __init__(self, folder: Path | None, video: Path) -> None:
        found = sorted((folder / video.stem).glob("*.png")) if folder else []
        self.files = {int(digits): p for p in found if (digits := "".join(filter(str.isdigit, p.stem)))}

    def get(self, index: int, shape: tuple[int, int]) -> np.ndarray | None:
        if index not in self.files:
            return None
        mask = read_image(self.files[index], gray=True)
        return cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > MAP_THRESHOLD


class SampleWriter:
    """Streams one segment's frames into its temporary folder: frame, flow and motion map by position."""

    def __init__(self, root: Path, segment: Segment, settings: PrepareSettings, flow: FlowComputer,
                 masks: HandMasks) -> None:
        self.root, self.segment, self.settings, self.flow, self.masks = root, segment, settings, flow, masks
        self.work = root / PREPARE_TEMP_NAME / "__".join(segment.key)
        for folder in [self.work, *COURSE.sample_roots(root, *segment.key)]:
            shutil.rmtree(folder, ignore_errors=True)  # leftovers of an interrupted run
        for modality in COURSE.modalities:
            COURSE.instance_dir(self.work, modality, *segment.key).mkdir(parents=True)
        self.frames = 0
        self.previous: np.ndarray | None = None
        self.last_map: np.ndarray | None = None

    def wants(self, index: int) -> bool:
        end = self.segment.end
        return self.segment.start <= index and (end is None or index <= end)

    def push(self, index: int, rgb: np.ndarray) -> None:
        """Add frame `index` of the video: write it, and the flow and map from the frame before."""
        write_image(self._path("rgb", self.frames), rgb)
        gray = to_gray(rgb)
        if self.previous is not None:
            flow = self.flow(self.previous, gray, self.masks.get(index - 1, gray.shape))
            position = self.frames - 1
            q = quantise(flow, self.settings.bound)
            write_image(self._path("flow_x", position), q[..., 0])
            write_image(self._path("flow_y", position), q[..., 1])
            self.last_map = motion_map(flow, self.settings.motion)
            write_image(self._path("mmaps", position), self.last_map)
        self.previous = gray
        self.frames += 1

    def finish(self) -> SampleResult:
        """Move the complete sample into place; DataError if it is too short."""
        if self.frames < MIN_FRAMES:
            raise DataError(f"too short: {self.frames} frame(s), need at least {MIN_FRAMES}")
        write_image(self._path("mmaps", self.frames - 1), self.last_map)  # last frame repeats map n-2
        for work, final in zip(COURSE.sample_roots(self.work, *self.segment.key),
                               COURSE.sample_roots(self.root, *self.segment.key)):
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(work, final)
        shutil.rmtree(self.work, ignore_errors=True)
        return SampleResult(self.segment, self.frames, self.frames - 1)

    def fail(self, reason: str) -> SampleResult:
        shutil.rmtree(self.work, ignore_errors=True)
        return SampleResult(self.segment, 0, 0, reason)

    def _path(self, modality: str, position: int) -> Path:
        return COURSE.path(self.work, modality, *self.segment.key, position)


def run_video(root: Path, settings: PrepareSettings, job: VideoJob) -> list[SampleResult]:
    """Prepare every segment of one video in one decoding pass; failures become results, not raises."""
    flow = FlowComputer(settings.flow, settings.warp)
    masks = HandMasks(settings.hand_masks, job.video)
    open_writers = [SampleWriter(root, s, settings, flow, masks) for s in job.segments]
    ends = [s.end for s in job.segments]
    last = None if None in ends else max(ends)
    results: list[SampleResult] = []
    video_id = identify(job.video)  # before decoding: what was read is at least this old

    def close(writer: SampleWriter, reason: str | None = None) -> None:
        open_writers.remove(writer)
        try:
            result = writer.fail(reason) if reason else writer.finish()
        except Exception as exc:  # noqa: BLE001 - any failure of one sample must not stop the others
            result = writer.fail(_reason(exc))
        result = dataclasses.replace(result, video_id=video_id)
        record(root, [result])
        results.append(result)

    seen = 0
    try:
        for index, rgb in decode(job.video, settings.size, min(s.start for s in job.segments), last):
            seen = index + 1
            for writer in [w for w in open_writers if w.wants(index)]:
                try:
                    writer.push(index, rgb)
                except Exception as exc:  # noqa: BLE001
                    close(writer, _reason(exc))
                    continue
                if index == writer.segment.end:
                    close(writer)
    except Exception as exc:  # noqa: BLE001 - an unreadable video fails its open segments only
        for writer in list(open_writers):
            close(writer, _reason(exc))
    for writer in list(open_writers):
        if writer.segment.end is None:
            close(writer)
        else:
            close(writer, _past_the_end(writer.segment, seen))
    return results


def _past_the_end(segment: Segment, seen: int) -> str:
    """The failure of a segment that ends after the video, in the user's own frame numbers."""
    base = segment.numbered_from
    counted = f" (frames counted from {base})" if base else ""
    where = f"{segment.origin}: " if segment.origin else ""
    return f"{where}segment ends at frame {segment.end + base}{counted} but the video has {seen} frames"


def _reason(exc: Exception) -> str:
    """A failure's one-line reason; exceptions other than DataError (bugs) also name their type."""
    text, name = one_line(exc), type(exc).__name__
    return text if isinstance(exc, DataError) or text == name else f"{name}: {text}"


# ---- the run ------------------------------------------------------------------------------------

def plan(segments: list[Segment]) -> list[VideoJob]:
    """Group segments by video, videos in order of first appearance in the labels file."""
    by_video: dict[Path, list[Segment]] = {}
    for segment in segments:
        by_video.setdefault(segment.video, []).append(segment)
    return [VideoJob(video, tuple(group)) for video, group in by_video.items()]


def _init_worker() -> None:
    cv2.setNumThreads(1)  # parallelism is across videos; OpenCV's own threads would oversubscribe


def prepare(labels: Path, out: Path, settings: PrepareSettings = PrepareSettings(), *,
            videos: Path | None = None, workers: int | None = None, shard: tuple[int, int] = (0, 1),
            progress: bool = True) -> PrepareReport:
    """Prepare every sample listed in `labels` (this shard's videos) into `out`; see the module doc."""
    out = Path(out)
    jobs = plan(read_labels(labels, videos))[shard[0]::shard[1]]
    _claim_root(out, settings)
    manifest = read_manifest(out)
    report = PrepareReport(samples=sum(len(j.segments) for j in jobs))
    todo, digests = [], {}
    for job in jobs:
        missing = tuple(s for s in job.segments if not is_complete(out, s, manifest, digests))
        report.skipped += len(job.segments) - len(missing)
        report.changed += sum(video_changed(s, manifest, digests) for s in missing)
        if missing:
            todo.append(VideoJob(job.video, missing))
    _refresh_mtimes(out, jobs, manifest, digests)
    start = time.perf_counter()
    with tqdm(total=len(todo), unit="video", disable=not progress or not todo, desc="prepare") as bar:
        for job, results in _run_jobs(out, settings, todo, workers or os.cpu_count() or 1):
            _account(report, job, results)
            bar.update(1)
            bar.set_postfix(frames_per_s=f"{report.frames / (time.perf_counter() - start):.1f}")
    report.seconds = time.perf_counter() - start
    _remove_if_empty(out / PREPARE_TEMP_NAME)
    return report


def _refresh_mtimes(root: Path, jobs: list[VideoJob], manifest: dict, digests: dict[Path, str]) -> None:
    """Record the new mtime of videos found the same by their SHA-1, so the next run need not read them."""
    updates = {}
    for job in jobs:
        if job.video in digests:
            now = fingerprint(job.video)
            for segment in job.segments:
                row = manifest.get(segment.key)
                if row and row["video_sha1"] == digests[job.video] and row["video_mtime_ns"] != now["video_mtime_ns"]:
                    updates[segment.key] = {**row, **now}
    if updates:
        _update_manifest(root, updates)


def _run_jobs(root: Path, settings: PrepareSettings, jobs: list[VideoJob],
              workers: int) -> Iterator[tuple[VideoJob, list[SampleResult]]]:
    """(job, results) as jobs finish: in this process for one worker, else in a process pool."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield job, run_video(root, settings, job)
        return
    pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn"),
                               initializer=_init_worker)
    with pool:
        futures = {pool.submit(run_video, root, settings, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                yield job, future.result()
            except Exception as exc:  # noqa: BLE001 - a worker that died takes only its video down
                results = [SampleResult(s, 0, 0, f"worker failed: {_reason(exc)}") for s in job.segments]
                record(root, results)
                yield job, results


def _account(report: PrepareReport, job: VideoJob, results: list[SampleResult]) -> None:
    for result in results:
        if result.ok:
            report.done += 1
            report.frames += result.frames
        else:
            report.failed.append((job.video, "/".join(result.segment.key), result.error))


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
