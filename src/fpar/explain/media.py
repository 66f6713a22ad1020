"""The input of CAM: one image or one video file, read as untrusted bytes, within limits.

`fpar cam` and the app read user files through `read_media` alone, so every bad input (too big,
too long, not an image or a video, corrupt or truncated, no frames, an image named like a video)
becomes one `DataError` naming the file and what is wrong, and nothing else reaches the models.

The kind is decided by the file's suffix and then checked against its content: PyAV (FFmpeg)
probes content and would happily decode a PNG renamed `.mp4` as a one-frame "video", so a file
with a video suffix that PIL recognises as an image is refused with a message saying so.
Frames are kept at display size (long side at most `DISPLAY_SIDE`), the size overlays are drawn at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from fpar.data.images import FORMATS, read_image
from fpar.errors import DataError
from fpar.explain.limits import Limits
from fpar.io.video import decode, resize

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mov")
DISPLAY_SIDE = 480  # long side of the frames overlays are drawn on (larger inputs are shrunk)
DEFAULT_FPS = 25.0  # for a video whose container states no frame rate


@dataclass
class Media:
    """An image (one frame, `is_video` False) or a video: RGB uint8 frames (n, H, W, 3) at display size."""

    path: Path
    frames: np.ndarray
    fps: float
    is_video: bool


def media_kind(path: Path) -> str:
    """"image" or "video" from the suffix; DataError listing the accepted suffixes otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    accepted = ", ".join(s.lstrip(".") for s in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
    raise DataError(f"{path}: not an image or a video (suffix {suffix or 'none'!r}); accepted: {accepted}")


def read_media(path: str | Path, limits: Limits = Limits()) -> Media:
    """Read an image or a video within `limits`; any bad input is a DataError naming `path`."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not an image or a video")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    megabytes = path.stat().st_size / 1e6
    if megabytes > limits.max_megabytes:
        raise DataError(f"{path}: {megabytes:.0f} MB is over the limit of {limits.max_megabytes:g} MB")
    if media_kind(path) == "image":
        return Media(path, _display(read_image(path))[None], DEFAULT_FPS, is_video=False)
    _refuse_image_as_video(path)
    frames, size = [], None
    for index, frame in decode(path, None):
        if index >= limits.max_frames:
            raise DataError(f"{path}: longer than the limit of {limits.max_frames} frames; cut the video shorter")
        size = size or display_size(*frame.shape[:2])  # the first frame's: a stream may change size midway
        frames.append(resize(frame, size))
    if not frames:
        raise DataError(f"{path}: video without frames")
    return Media(path, np.stack(frames), video_fps(path), is_video=True)


def video_fps(path: Path) -> float:
    """The container's average frame rate, or DEFAULT_FPS when it states none."""
    with av.open(str(path), metadata_errors="replace") as container:
        rate = container.streams.video[0].average_rate
    return float(rate) if rate else DEFAULT_FPS


def display_size(height: int, width: int) -> tuple[int, int]:
    """(width, height) with the long side at most DISPLAY_SIDE, aspect kept (smaller inputs unchanged)."""
    scale = min(1.0, DISPLAY_SIDE / max(height, width))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _display(frame: np.ndarray) -> np.ndarray:
    return resize(frame, display_size(*frame.shape[:2]))


def _refuse_image_as_video(path: Path) -> None:
    try:
        with Image.open(path, formats=FORMATS) as image:  # only probing: other formats go to the video decoder
            kind = image.format
    except (UnidentifiedImageError, OSError, ValueError):
        return  # not an image: let the video decoder judge it
    raise DataError(f"{path}: this is a {kind} image named like a video ({path.suffix}); "
                    f"rename it to .{(kind or 'png').lower()} to use it as an image")
