"""Pictures of CAM results: heat-map overlays with a caption, side by side, as PNG or H.264 video.

Every picture takes one input (`Media`) and one or more `CamResult`s on it (one per model), so
`fpar cam` and `fpar cam --compare` share all of it: a single model is a row of one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from fpar.explain.cam import CamResult
from fpar.explain.media import Media
from fpar.io.video import write_image, write_video

COLOURMAP = colormaps["jet"]
DEFAULT_ALPHA = 0.5


def heat(cam: np.ndarray, width: int, height: int) -> np.ndarray:
    """A [0, 1] map (h, w) upsampled (bilinear) to the frame and coloured: float RGB in [0, 255]."""
    big = cv2.resize(cam.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return COLOURMAP(np.clip(big, 0, 1))[..., :3] * 255


def overlay(frame: np.ndarray, cam: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """The frame blended with the coloured map: (1 - alpha) frame + alpha heat, uint8 RGB."""
    blended = (1 - alpha) * frame.astype(np.float32) + alpha * heat(cam, frame.shape[1], frame.shape[0])
    return np.clip(blended, 0, 255).astype(np.uint8)


def caption(image: np.ndarray, text: str) -> np.ndarray:
    """`image` with `text` on a dark band along its top (same size, so video sizes stay the input's)."""
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    size = max(8, min(16, image.shape[0] // 8))
    font = ImageFont.load_default(size=size)
    draw.rectangle((0, 0, image.shape[1], size + 4), fill=(0, 0, 0))
    draw.text((3, 2), text, fill=(255, 255, 255), font=font)
    return np.asarray(picture)


def headline(result: CamResult) -> str:
    """`model: class 87%`, the caption of a model's panel."""
    return f"{result.label}: {result.predicted} {result.probabilities[result.target]:.0%}"


def panels(media: Media, results: list[CamResult], index: int, alpha: float) -> np.ndarray:
    """Frame `index` overlaid with each result's map, captioned, side by side."""
    frame = media.frames[index]
    return np.hstack([caption(overlay(frame, r.maps[index], alpha), headline(r)) for r in results])


def cam_frames(media: Media, results: list[CamResult], alpha: float) -> Iterator[np.ndarray]:
    """Every frame of the input with its panels, in order."""
    for index in range(len(media.frames)):
        yield panels(media, results, index, alpha)


def write_cam_image(path: Path, media: Media, results: list[CamResult], alpha: float = DEFAULT_ALPHA) -> Path:
    """The first (an image's only) frame's panels as a PNG."""
    write_image(path, panels(media, results, 0, alpha))
    return path


def write_cam_video(path: Path, media: Media, results: list[CamResult], alpha: float = DEFAULT_ALPHA) -> Path:
    """Every frame's panels as H.264 mp4 (yuv420p) at the input's frame rate."""
    write_video(path, cam_frames(media, results, alpha), media.fps)
    return path


def write_cam_sheet(path: Path, media: Media, results: list[CamResult], alpha: float = DEFAULT_ALPHA) -> Path:
    """A contact sheet: one row per model, one column per frame the (first) model's clip read."""
    columns = list(dict.fromkeys(results[0].sampled))
    height, width = media.frames.shape[1:3]
    figure = Figure(figsize=(1.8 * len(columns) * width / height + 1.2, 1.8 * len(results) + 0.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(results), len(columns), squeeze=False)
    for row_axes, result in zip(axes, results):
        for ax, t in zip(row_axes, columns):
            ax.imshow(overlay(media.frames[t], result.maps[t], alpha))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"frame {t}", fontsize=7)
        row_axes[0].set_ylabel(f"{result.label}\n{result.predicted} {result.probabilities[result.target]:.0%}",
                               fontsize=7)
    what = "the models' own attention" if results[0].method == "attention" else \
        f"{results[0].method} maps of each model's predicted class"
    figure.suptitle(f"{media.path.name}: {what} (red = strong; normalised per video)", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    return path
