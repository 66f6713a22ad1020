"""`fpar prepare`: raw videos -> GTEA61's course layout, one job per video, in parallel.

Why it is shaped this way:

* One job per *video*, not per sample: a raw GTEA video holds many labelled segments, and one
  pass of the decoder serves all of them (`video_run`: each segment streams its frames, flow and
  maps to disk as they are decoded, so memory does not grow with the video's length).
* Kill-safe: a run holds one lock per (root, shard) from start to end (a second run on them is
  refused, naming the holder's PID), works in its own folder (`pool.RunSpace`) whose workers die
  with it, and writes a sample there before renaming it into place and recording it in the manifest
  (`manifest`). A run killed at any moment (even ``kill -9``, of the main process alone or of all)
  resumes with only what is missing, and a finished root holds no lock, journal or temporary file.
* Instances are numbered in labels-file order and the manifest records each one's source (video,
  segment, video file), so a sample is kept only if it still comes from the same place. After the
  labels file is edited, shifted instances are redone and instances whose row is gone are removed
  (folders and manifest row): the root equals a fresh run on the edited file.
* Sharding takes every N-th video of the labels file; instance numbers come from the labels file
  alone (see `fpar.io.labels`), so shards agree on them, and shards can share one root.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from fpar.data.layout import COURSE, RUN_LOCK_NAME, ManifestRows
from fpar.io.labels import Segment, read_labels
from fpar.options import usable_cores
from fpar.prepare.locks import locked, run_lock
from fpar.prepare.manifest import ManifestStore, SampleResult, fingerprint, is_complete, video_changed
from fpar.prepare.pool import RunSpace, run_jobs
from fpar.prepare.settings import PrepareSettings, claim_root, make_root, shard_tag
from fpar.prepare.video_run import VideoJob


@dataclass
class PrepareReport:
    """What a run did; `failed` lists (video, sample id, reason)."""

    samples: int = 0
    skipped: int = 0
    changed: int = 0  # of those to do: done before, but their video changed since
    removed: int = 0  # samples whose labels row is gone, removed from the root
    done: int = 0
    frames: int = 0
    seconds: float = 0.0
    failed: list[tuple[Path, str, str]] = field(default_factory=list)

    def summary(self) -> list[str]:
        """Lines for the terminal: counts, then one line per failed sample with path and reason."""
        rate = self.frames / self.seconds if self.seconds else 0.0
        changed = f" ({self.changed} redone because their video changed)" if self.changed else ""
        removed = f", {self.removed} removed (no longer in the labels file)" if self.removed else ""
        lines = [f"{_plural(self.samples, 'sample')}: {self.done} prepared{changed} ({self.frames} frames, "
                 f"{rate:.1f} frames/s), {self.skipped} already complete, {len(self.failed)} failed{removed}"]
        lines += [f"  failed {sample} ({video}): {reason.removeprefix(f'{video}: ')}"
                  for video, sample, reason in self.failed]
        return lines


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def plan(segments: list[Segment]) -> list[VideoJob]:
    """Group segments by video, videos in order of first appearance in the labels file."""
    by_video: dict[Path, list[Segment]] = {}
    for segment in segments:
        by_video.setdefault(segment.video, []).append(segment)
    return [VideoJob(video, tuple(group)) for video, group in by_video.items()]


def prepare(labels: Path, out: Path, settings: PrepareSettings = PrepareSettings(), *,
            videos: Path | None = None, workers: int | None = None, shard: tuple[int, int] = (0, 1),
            progress: bool = True) -> PrepareReport:
    """Prepare every sample listed in `labels` (this shard's videos) into `out`; see the module doc."""
    out = Path(out)
    segments = read_labels(labels, videos)
    jobs = plan(segments)[shard[0]::shard[1]]
    make_root(out)
    store = ManifestStore(out)
    with locked(store.lock):  # two shards starting at once agree on one settings file
        claim_root(out, settings)
    tag = shard_tag(shard)
    with run_lock(out / RUN_LOCK_NAME.format(shard=tag)), RunSpace(out, tag) as space:
        manifest = store.rows()
        report = PrepareReport(samples=sum(len(j.segments) for j in jobs))
        report.removed = _remove_stale(out, store, manifest, {s.key for s in segments})
        todo, digests = [], {}
        for job in jobs:
            missing = tuple(s for s in job.segments if not is_complete(out, s, manifest, digests))
            report.skipped += len(job.segments) - len(missing)
            report.changed += sum(video_changed(s, manifest, digests) for s in missing)
            if missing:
                todo.append(VideoJob(job.video, missing))
        _refresh_mtimes(store, jobs, manifest, digests)
        start = time.perf_counter()
        with tqdm(total=len(todo), unit="video", disable=not progress or not todo, desc="prepare") as bar:
            for job, results in run_jobs(out, space, settings, todo, workers or usable_cores()):
                _account(report, job, results)
                bar.update(1)
                bar.set_postfix(frames_per_s=f"{report.frames / (time.perf_counter() - start):.1f}")
        report.seconds = time.perf_counter() - start
        store.fold()
    return report


def _remove_stale(root: Path, store: ManifestStore, manifest: ManifestRows, listed: set) -> int:
    """Remove the samples (folders and rows) the manifest has but the labels file no longer lists."""
    stale = [row for key, row in manifest.items() if key not in listed]
    for row in stale:
        for folder in COURSE.sample_roots(root, row["user"], row["class"], row["instance"]):
            shutil.rmtree(folder, ignore_errors=True)
    if stale:
        store.remove(stale)
    return len(stale)


def _refresh_mtimes(store: ManifestStore, jobs: list[VideoJob], manifest: ManifestRows,
                    digests: dict[Path, str]) -> None:
    """Record the new mtime of videos found the same by their SHA-1, so the next run need not read them."""
    updates = []
    for job in jobs:
        if job.video in digests:
            now = fingerprint(job.video)
            for segment in job.segments:
                row = manifest.get(segment.key)
                if row and row["video_sha1"] == digests[job.video] and row["video_mtime_ns"] != now["video_mtime_ns"]:
                    updates.append({**row, **now})
    if updates:
        store.record(updates)


def _account(report: PrepareReport, job: VideoJob, results: list[SampleResult]) -> None:
    for result in results:
        if result.ok:
            report.done += 1
            report.frames += result.frames
        else:
            report.failed.append((job.video, "/".join(result.segment.key), result.error))
