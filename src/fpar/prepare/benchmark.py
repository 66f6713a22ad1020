"""Speed of each flow method on consecutive frame pairs (`fpar prepare-bench`).

Frames come from a video the user names, or from a synthetic clip made on the spot (the scene of
`fpar synth`, encoded and decoded like any raw video). Timing runs OpenCV on one thread by default,
because `prepare` runs one video per core with one OpenCV thread each: the numbers are per core.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fpar.data.synthetic import SynthConfig, synthesize
from fpar.errors import DataError
from fpar.options import DEFAULT_FRAME_SIZE
from fpar.prepare.flow import FLOW_METHODS, FlowComputer, dense_flow, to_gray
from fpar.io.labels import read_labels
from fpar.io.video import Size, decode


@dataclass(frozen=True)
class Speed:
    """Frames (pairs) per second of one method: dense flow alone, and the whole warp flow."""

    method: str
    flow_fps: float
    warp_flow_fps: float


@dataclass(frozen=True)
class BenchResult:
    size: Size
    pairs: int
    threads: int
    homography_fps: float  # feature tracking + RANSAC + warp, shared by every method
    speeds: list[Speed]


def bench_frames(size: Size, count: int, video: Path | None = None) -> list[np.ndarray]:
    """`count` consecutive grayscale frames at `size`, from `video` or from a fresh synthetic clip."""
    if video is not None:
        frames = [to_gray(rgb) for _, rgb in decode(video, size, 0, count - 1)]
        if len(frames) < count:
            raise DataError(f"{video}: has {len(frames)} frames, the benchmark needs {count}")
        return frames
    with tempfile.TemporaryDirectory() as folder:
        cfg = SynthConfig(users=["S1"], classes=["take_cup"], clips_per_class=1, width=size[0],
                          height=size[1], frames=max(count, 8))
        summary = synthesize(folder, cfg, progress=False)
        return bench_frames(size, count, read_labels(summary.labels)[0].video)


def _rate(pairs: int, seconds: float) -> float:
    return pairs / seconds if seconds > 0 else float("inf")


def _timed(function, frames: list[np.ndarray], bar: tqdm | None = None) -> float:
    """Pairs per second of `function(prev, next)` over consecutive frames, after one warm-up call;
    `bar` advances one step a pair (outside the timed calls' sum)."""
    function(frames[0], frames[1])
    seconds = 0.0
    for a, b in zip(frames, frames[1:]):
        start = time.perf_counter()
        function(a, b)
        seconds += time.perf_counter() - start
        if bar is not None:
            bar.update(1)
    return _rate(len(frames) - 1, seconds)


def benchmark(size: Size = DEFAULT_FRAME_SIZE, pairs: int = 10, methods: tuple[str, ...] = FLOW_METHODS,
              video: Path | None = None, threads: int = 1, progress: bool = False) -> BenchResult:
    """Time homography estimation and each method's dense flow on `pairs` frame pairs; `progress`
    shows a progress bar over (homography + methods) x pairs."""
    if pairs < 1 or threads < 1:
        raise DataError(f"the benchmark needs --pairs >= 1 and --threads >= 1, got {pairs} and {threads}")
    frames = bench_frames(size, pairs + 1, video)
    previous_threads = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        with tqdm(total=(len(methods) + 1) * pairs, unit="pair", desc="homography", disable=not progress) as bar:
            homography_fps = _timed(FlowComputer.compensate, frames, bar)
            speeds = []
            for method in methods:
                bar.set_description(method)
                flow = dense_flow(method)
                flow_fps = _timed(flow, frames, bar)
                speeds.append(Speed(method, flow_fps, 1.0 / (1.0 / flow_fps + 1.0 / homography_fps)))
    finally:
        cv2.setNumThreads(previous_threads)
    return BenchResult(size, pairs, threads, homography_fps, speeds)
