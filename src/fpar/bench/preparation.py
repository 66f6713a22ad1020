"""(a) `fpar prepare`'s throughput per flow method and worker count, and where a frame's time goes.

Throughput is the real `prepare` on a fresh synthetic set (a fresh output folder per run), as
frames/s over its job loop (what `prepare` itself prints), and as CPU time per frame (all its
processes): on a machine shared with other jobs the wall-clock rate says how busy the machine was,
while `cores / CPU time` says what the cores would give if they were free. The share of each part
comes from one video run part by part in this process (CPU time), with the pipeline's own
functions and one OpenCV thread (as each worker runs): decode, homography (features, RANSAC,
warp), dense flow, motion maps, and image writes (quantising the flow included). The same root is then scored against the synthetic
ground truth (`prepare.quality`), so a speed-up that changes the output shows up here.
"""

from __future__ import annotations

import resource
import shutil
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import cv2

from fpar.data.synthetic import SynthConfig, synthesize
from fpar.io.labels import read_labels
from fpar.io.video import decode, write_image
from fpar.options import format_size, usable_cores
from fpar.prepare.flow import FlowComputer, dense_flow, flow_images, to_gray
from fpar.prepare.motion_maps import motion_map
from fpar.prepare.pipeline import prepare
from fpar.prepare.quality import evaluate
from fpar.prepare.settings import PrepareSettings
from fpar.bench.timing import Repeats, load_average

PARTS = ("decode", "homography", "dense_flow", "motion_maps", "image_writes")
T = TypeVar("T")


def make_videos(folder: Path, size: tuple[int, int], clips: int, frames: int) -> Path:
    """A synthetic raw set of `clips` videos (two users, so a prepared root splits); its labels.csv."""
    per_user = max(1, clips // 2)
    cfg = SynthConfig(users=["S1", "S2"], classes=["take_cup"], clips_per_class=per_user, width=size[0],
                      height=size[1], frames=frames)
    return synthesize(folder, cfg, progress=False, workers=1).labels


def part_times(video: Path, size: tuple[int, int], method: str, scratch: Path) -> dict[str, float]:
    """CPU milliseconds per frame of each part of the pipeline (module doc) on one video."""
    totals: dict[str, float] = defaultdict(float)

    def timed(part: str, call: Callable[[], T]) -> T:
        start = time.process_time()
        value = call()
        totals[part] += time.process_time() - start
        return value

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    scratch.mkdir(parents=True, exist_ok=True)
    computer, frames = FlowComputer(method), 0
    try:
        stream, previous = decode(video, size), None
        while (item := timed("decode", lambda: next(stream, None))) is not None:
            rgb = item[1]
            gray = timed("decode", lambda: to_gray(rgb))
            timed("image_writes", lambda: write_image(scratch / "rgb.png", rgb))
            if previous is not None:
                moved = timed("homography", lambda: FlowComputer.compensate(previous, gray))
                flow = timed("dense_flow", lambda: computer.flow(previous, moved))
                timed("motion_maps", lambda: write_image(scratch / "map.png", motion_map(flow)))
                for axis, image in zip("xy", timed("image_writes", lambda: flow_images(flow))):
                    timed("image_writes", lambda: write_image(scratch / f"flow_{axis}.png", image))
            previous, frames = gray, frames + 1
    finally:
        cv2.setNumThreads(threads)
    return {part: 1000 * totals[part] / frames for part in PARTS}


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (prepare's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def throughput(labels: Path, out: Path, method: str, workers: int, size: tuple[int, int]) -> tuple[float, float]:
    """Frames/s and CPU milliseconds per frame of one `prepare` run into the new folder `out`.

    Never into a folder just emptied: on ext4, files created within 30 s of deleting thousands
    cost the kernel a scan past the recently deleted inodes. Re-preparing into a root removed a
    moment before ran at 122-134 frames/s here against 150-157 into a fresh folder (2 workers,
    DIS; the system time went from 0.7 to 3.6 ms a frame), so the bench keeps every run's root
    until the section ends, instead of measuring the file system's bookkeeping."""
    if out.exists():
        raise RuntimeError(f"{out}: the bench prepares into a new folder each run")
    cpu = cpu_seconds()
    report = prepare(labels, out, PrepareSettings(size=size, flow=method), workers=workers, progress=False)
    cpu = cpu_seconds() - cpu
    if report.failed:
        raise RuntimeError(f"prepare failed during the bench: {report.failed[0]}")
    return report.frames / report.seconds, 1000 * cpu / report.frames


def bench_prepare(work: Path, size: tuple[int, int], clips: int, frames: int, methods: tuple[str, ...],
                  workers: tuple[int, ...], repeats: Repeats) -> tuple[dict, Path]:
    """Section (a), and the DIS root it leaves for the data-loading section."""
    labels = make_videos(work / "raw", size, clips, frames)
    video = read_labels(labels)[0].video
    rows, roots = [], work / "roots"  # one root per run (`throughput`), removed at the end
    for method in methods:
        parts = part_times(video, size, method, work / "scratch")
        runs: dict[int, list[tuple[float, float]]] = {w: [] for w in workers}
        for repeat in range(repeats.repeats):  # interleaved over worker counts
            for count in workers:
                out = roots / f"{method}-{count}-{repeat}"
                runs[count].append(throughput(labels, out, method, count, size))
        for count in workers:
            rate, cpu_ms = (statistics.median(column) for column in zip(*runs[count]))
            rows.append({"method": method, "workers": count, "frames_per_s": rate, "cpu_ms_per_frame": cpu_ms,
                         "frames_per_s_if_cores_free": min(count, usable_cores()) * 1000 / cpu_ms,
                         "part_cpu_ms_per_frame": parts, "share": {p: parts[p] / sum(parts.values()) for p in PARTS},
                         "load_average": load_average()})
    root = work / "root-dis"
    shutil.rmtree(root, ignore_errors=True)
    if "dis" in methods:
        (roots / f"dis-{max(workers)}-0").rename(root)
    else:
        throughput(labels, root, "dis", max(workers), size)
    shutil.rmtree(roots, ignore_errors=True)
    scores = evaluate(labels, root)
    quality = {"flow": "dis", "motion_map_iou": scores.iou, "plain_residual": scores.plain_residual,
               "warp_residual": scores.warp_residual}
    section = {"size": format_size(size), "clips": clips, "frames_per_clip": frames, "rows": rows,
               "quality": quality}
    return section, root
