"""(e) CAM video: seconds of `fpar cam` per second of video, per method, with the `rgb` model.

The input is a synthetic head-camera video (`fpar synth`'s renderer) of the asked length, frame
rate and size; the checkpoint is an `rgb` model at the bench's scale with random weights (the
cost does not depend on the weights). Each method runs `explain.run_cam` end to end: read and
decode, classify the clip, map every frame, write the H.264 video and its contact sheet. The
warm-up runs on a one-second cut of the same video, so the timed runs are the long ones only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fpar.bench.timing import Repeats, interleaved, load_average
from fpar.bench.training import Scale, model_config
from fpar.data.synthetic import SynthConfig, synthesize
from fpar.data.transforms import NORMALIZATION
from fpar.explain.cam import METHODS
from fpar.explain.run import run_cam
from fpar.io.labels import read_labels
from fpar.io.video import read_video, write_video
from fpar.models.checkpoints import CheckpointMeta, save_checkpoint
from fpar.models.registry import build_model


def make_video(folder: Path, seconds: float, fps: int, size: tuple[int, int]) -> Path:
    """A synthetic video of `seconds` at `fps` and `size` (width, height)."""
    cfg = SynthConfig(users=["S1"], classes=["take_cup"], clips_per_class=1, width=size[0], height=size[1],
                      frames=max(8, round(seconds * fps)), fps=fps)
    return read_labels(synthesize(folder, cfg, progress=False, workers=1).labels)[0].video


def make_checkpoint(path: Path, scale: Scale) -> Path:
    cfg = model_config("rgb", "two_pass", scale)
    torch.manual_seed(0)
    meta = CheckpointMeta(config=cfg, class_names=[f"class_{i}" for i in range(cfg.num_classes)],
                          normalization={"rgb": NORMALIZATION["rgb"]})
    save_checkpoint(path, build_model(cfg), meta)
    return path


def bench_cam(work: Path, scale: Scale, seconds: float, fps: int, size: tuple[int, int], repeats: int) -> dict:
    """Seconds per video-second of each CAM method (module doc)."""
    work.mkdir(parents=True, exist_ok=True)
    video = make_video(work / "video", seconds, fps, size)
    short = work / "warmup.mp4"
    write_video(short, read_video(video)[:fps], fps)
    checkpoint = make_checkpoint(work / "rgb.pt", scale)

    def runner(method: str, source: Path):
        return lambda: run_cam([checkpoint], source, work / f"cam_{method}.mp4", method)

    for method in METHODS:
        runner(method, short)()
    timed = interleaved({m: runner(m, video) for m in METHODS}, Repeats(warmup=0, repeats=repeats))
    rows = [{"method": m, "seconds": s, "seconds_per_video_second": s / seconds} for m, s in timed.items()]
    return {"model": "rgb", "scale": scale.name, "video_seconds": seconds, "fps": fps,
            "size": f"{size[0]}x{size[1]}", "rows": rows, "load_average": load_average()}
