"""One video's job: all its segments in one decoding pass, each sample recorded as it ends.

Every failure (set-up of a sample's writer, decoding, writing, a segment outside the video) becomes
that sample's failed result with a one-line reason; nothing here raises for one bad sample.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from fpar.errors import DataError, one_line
from fpar.io.labels import Segment
from fpar.io.video import decode
from fpar.prepare.flow import FlowComputer
from fpar.prepare.manifest import ManifestStore, SampleResult, identify
from fpar.prepare.settings import PrepareSettings
from fpar.prepare.writer import HandMasks, SampleWriter


@dataclass(frozen=True)
class VideoJob:
    """One video and the segments of it that this run must prepare."""

    video: Path
    segments: tuple[Segment, ...]


def run_video(root: Path, work: Path, settings: PrepareSettings, job: VideoJob) -> list[SampleResult]:
    """Prepare every segment of one video in one decoding pass, writing under `work` (this run's
    folder) and renaming into `root`; failures become results, not raises."""
    store = ManifestStore(root)
    video_id = identify(job.video)  # before decoding: what was read is at least this old
    results: list[SampleResult] = []

    def record(result: SampleResult) -> None:
        result = dataclasses.replace(result, video_id=video_id)
        store.record([result.row()])
        results.append(result)

    open_writers: list[SampleWriter] = []
    try:
        flow, masks = FlowComputer(settings.flow, settings.warp), HandMasks(settings.hand_masks, job.video)
    except Exception as exc:  # noqa: BLE001 - e.g. a badly named hand mask: this video's samples fail
        for segment in job.segments:
            record(SampleResult(segment, 0, 0, reason(exc)))
        return results
    for segment in job.segments:
        try:
            open_writers.append(SampleWriter(root, work, segment, settings, flow, masks))
        except Exception as exc:  # noqa: BLE001 - e.g. a folder that cannot be made
            record(SampleResult(segment, 0, 0, reason(exc)))

    def close(writer: SampleWriter, why: str | None = None) -> None:
        open_writers.remove(writer)
        try:
            result = writer.fail(why) if why else writer.finish()
        except Exception as exc:  # noqa: BLE001 - any failure of one sample must not stop the others
            result = writer.fail(reason(exc))
        record(result)

    seen = 0
    ends = [w.segment.end for w in open_writers]
    try:
        if open_writers:
            first, last = min(w.segment.start for w in open_writers), None if None in ends else max(ends)
            for index, rgb in decode(job.video, settings.size, first, last):
                seen = index + 1
                for writer in [w for w in open_writers if w.wants(index)]:
                    try:
                        writer.push(index, rgb)
                    except Exception as exc:  # noqa: BLE001
                        close(writer, reason(exc))
                        continue
                    if index == writer.segment.end:
                        close(writer)
    except Exception as exc:  # noqa: BLE001 - an unreadable video fails its open segments only
        for writer in list(open_writers):
            close(writer, reason(exc))
    if any(w.segment.start >= seen for w in open_writers):  # no frame reached them: how many are there?
        seen = sum(1 for _ in decode(job.video, None))  # (decoding only yields frames from `first` on)
    for writer in list(open_writers):
        outside = writer.segment.start >= seen or writer.segment.end is not None
        close(writer, past_the_end(writer.segment, seen) if outside else None)
    return results


def past_the_end(segment: Segment, seen: int) -> str:
    """The failure of a segment that starts or ends after the video, in the user's own frame numbers."""
    base = segment.numbered_from
    counted = f" (frames counted from {base})" if base else ""
    where = f"{segment.origin}: " if segment.origin else ""
    if segment.start >= seen:
        return f"{where}segment starts at frame {segment.start + base}{counted} but the video has {seen} frames"
    return f"{where}segment ends at frame {segment.end + base}{counted} but the video has {seen} frames"


def reason(exc: Exception) -> str:
    """A failure's one-line reason; exceptions other than DataError (bugs) also name their type."""
    text, name = one_line(exc), type(exc).__name__
    return text if isinstance(exc, DataError) or text == name else f"{name}: {text}"
