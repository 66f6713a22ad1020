"""Helpers of the CAM and app tests: tiny models with their checkpoint metadata (not saved to
disk), and the bad input files every reader of uploads must refuse with a clear message."""

from __future__ import annotations

from pathlib import Path

import av
from PIL import Image
from torch import nn

from fpar.config import ModelConfig
from fpar.data.transforms import NORMALIZATION
from fpar.models import CheckpointMeta, build_model, list_models

MODEL_NAMES = list_models()
CLASSES = ["take_cup", "put_cup", "shake_box"]


def tiny(name: str, image_size: int = 64, frames: int = 3, **options) -> tuple[nn.Module, CheckpointMeta]:
    """A random-weight model in eval mode and its meta: 64x64 input (layer4 2x2), N=3, L=2."""
    cfg = ModelConfig(name=name, num_classes=len(CLASSES), frames=frames, flow_stack=2, image_size=image_size,
                      mem_size=16, **options)
    return build_model(cfg).eval(), CheckpointMeta(cfg, list(CLASSES), NORMALIZATION)


def zero_frame_avi(path: Path) -> Path:
    """An AVI with a video stream and no frame."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    return path


def bad_files(folder: Path, video: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the message it must give)."""
    data = video.read_bytes()
    folder.mkdir(exist_ok=True)
    (folder / "notes.png").write_text("not an image")
    (folder / "notes.mp4").write_text("not a video")
    (folder / "notes.txt").write_text("neither")
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    Image.new("RGB", (32, 24)).save(folder / "picture.png")
    (folder / "picture.mp4").write_bytes((folder / "picture.png").read_bytes())
    return {
        "text named .png": (folder / "notes.png", "notes.png: unreadable image"),
        "text named .mp4": (folder / "notes.mp4", "notes.mp4: cannot decode video"),
        "unknown suffix": (folder / "notes.txt", r"notes.txt: not an image or a video \(suffix '.txt'\)"),
        "truncated video": (folder / "truncated.mp4", "truncated.mp4: cannot decode video"),
        "zero frames": (zero_frame_avi(folder / "empty.avi"), "empty.avi: video without frames"),
        "image renamed .mp4": (folder / "picture.mp4", r"picture.mp4: this is a PNG image named like a video \(.mp4\)"),
    }


BAD_FILES = ["text named .png", "text named .mp4", "unknown suffix", "truncated video", "zero frames",
             "image renamed .mp4"]
