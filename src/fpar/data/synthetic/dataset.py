"""Write a synthetic raw data set: videos, labels.csv and ground truth (DESIGN section 5).

    OUT/labels.csv            video,user,label   (video relative to labels.csv)
    OUT/videos/<id>.mp4       H.264, yuv420p
    OUT/gt/<id>.npz           moving (T, H, W) bool, camera (T, 3, 3) float64

A video id is `<user>_<label>_<k>`. Each clip draws from its own generator keyed by
(seed, video id), so a clip is the same whatever else is made with it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fpar.data.layout import LABELS_NAME, SYNTH_GT_DIR, SYNTH_VIDEOS_DIR
from fpar.data.synthetic.presets import (  # noqa: F401 (re-exported)
    DEFAULT_CLASSES,
    MIN_FRAMES,
    MIN_SIZE,
    TINY_CLASSES,
    SynthConfig,
)
from fpar.data.synthetic.render import render_clip
from fpar.errors import DataError
from fpar.io.atomic import write_atomic
from fpar.io.video import write_video
from fpar.options import parse_list, parse_size, usable_cores

SMALL_SET = 64  # clips: fewer render faster in this process than in a pool of workers


@dataclass(frozen=True)
class SynthSummary:
    """What `synthesize` wrote, for the CLI's table and the demo."""

    out_dir: Path
    labels: Path
    videos: int
    users: list[str]
    classes: list[str]
    frames: int
    width: int
    height: int
    seconds: float


def config_from_options(
    tiny: bool = False,
    users: str | None = None,
    classes: str | None = None,
    clips_per_class: int | None = None,
    size: str | None = None,
    frames: int | None = None,
    seed: int | None = None,
) -> SynthConfig:
    """The CLI's options on top of the default (or `tiny`) preset; only given options override."""
    cfg = SynthConfig.tiny() if tiny else SynthConfig()
    if users is not None:
        cfg.users = parse_list(users)
    if classes is not None:
        cfg.classes = parse_list(classes)
    if size is not None:
        cfg.width, cfg.height = parse_size(size)
    for name, value in (("clips_per_class", clips_per_class), ("frames", frames), ("seed", seed)):
        if value is not None:
            setattr(cfg, name, value)
    cfg.validate()
    return cfg


def video_ids(cfg: SynthConfig) -> list[tuple[str, str, str]]:
    """(video id, user, label) of every clip, in labels.csv order."""
    return [
        (f"{user}_{label}_{k:02d}", user, label)
        for user in cfg.users
        for label in cfg.classes
        for k in range(cfg.clips_per_class)
    ]


def stable_key(*parts: object) -> int:
    """A 128-bit seed from values, the same on every machine and Python (unlike `hash`)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:16], "little")


def synthesize(
    out_dir: str | Path, cfg: SynthConfig | None = None, progress: bool = True, workers: int | None = None
) -> SynthSummary:
    """Render every clip of `cfg` into `out_dir` (created; files of the same names are replaced).

    Clips render in `workers` processes (default: all cores, or 1 for fewer than SMALL_SET clips;
    1 renders in this process). Clips do not depend on each other, so the output is the same for
    any number of workers.
    Default config (160 clips of 24 frames at 320x240, 19 MB): about 25 s of CPU, 23 s on 2 cores.
    """
    cfg = cfg or SynthConfig()
    cfg.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: --out must be a folder (new, or made by fpar synth before), but this is a file")
    started = time.perf_counter()
    jobs = [(out, cfg, *clip) for clip in video_ids(cfg)]
    if workers is None:  # starting a process costs about a second: not worth it for a tiny set
        workers = usable_cores() if len(jobs) >= SMALL_SET else 1
    try:
        (out / SYNTH_VIDEOS_DIR).mkdir(parents=True, exist_ok=True)
        (out / SYNTH_GT_DIR).mkdir(parents=True, exist_ok=True)
        rows = _run(jobs, min(workers, len(jobs)), progress)
    except OSError as exc:
        raise DataError(f"{exc.filename or out}: cannot write ({exc.strerror or exc})") from exc
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["video", "user", "label"])
    writer.writerows(rows)
    labels = write_atomic(out / LABELS_NAME, buffer.getvalue())  # the one name `fpar prepare` reads
    return SynthSummary(
        out, labels, len(rows), list(cfg.users), list(cfg.classes), cfg.frames, cfg.width, cfg.height,
        time.perf_counter() - started,
    )


def _run(jobs: list[tuple], workers: int, progress: bool) -> list[tuple[str, str, str]]:
    """Make every clip, here or in a pool of fresh ("spawn": safe beside torch threads) processes."""
    bar = {"total": len(jobs), "desc": "synth", "unit": "video", "disable": not progress}
    if workers <= 1:
        return [_make_clip(job) for job in tqdm(jobs, **bar)]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return list(tqdm(pool.map(_make_clip, jobs), **bar))


def _make_clip(job: tuple[Path, SynthConfig, str, str, str]) -> tuple[str, str, str]:
    """Render and write one clip; return its labels.csv row. Runs in a worker process."""
    out, cfg, video_id, user, label = job
    user_key, clip_key = stable_key(cfg.seed, "user", user), stable_key(cfg.seed, "clip", video_id)
    clip = render_clip(label, cfg.frames, cfg.width, cfg.height, user_key, clip_key)
    video = Path(SYNTH_VIDEOS_DIR) / f"{video_id}.mp4"
    write_video(out / video, clip.frames, cfg.fps)
    save_ground_truth(out / SYNTH_GT_DIR / f"{video_id}.npz", clip.moving, clip.camera)
    return video.as_posix(), user, label


def ground_truth_path(synth_dir: str | Path, video: str) -> Path:
    """gt file of a video, given its id or its labels.csv path (e.g. videos/S1_take_cup_00.mp4)."""
    return Path(synth_dir) / SYNTH_GT_DIR / f"{Path(video).stem}.npz"


def save_ground_truth(path: Path, moving: np.ndarray, camera: np.ndarray) -> None:
    np.savez_compressed(path, moving=moving.astype(bool), camera=camera.astype(np.float64))


def load_ground_truth(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(moving (T, H, W) bool, camera (T, 3, 3) float64) of one video; DataError if malformed."""
    try:
        with np.load(path) as data:
            moving, camera = data["moving"], data["camera"]
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: not a ground-truth file with 'moving' and 'camera' ({exc})") from exc
    if moving.dtype != bool or moving.ndim != 3 or camera.shape != (len(moving), 3, 3):
        raise DataError(
            f"{path}: expected moving (T, H, W) bool and camera (T, 3, 3), "
            f"got {moving.shape} {moving.dtype} and {camera.shape}"
        )
    return moving, camera
