"""A contact sheet of a synthetic data set: a few clips' frames with their true moving masks.

So a person can see, before training on it, what the data looks like and what the ground truth
calls "moving". One row a clip (one clip per class first), frames spread over the clip, the
moving pixels tinted red and outlined.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fpar.data.layout import LABELS_NAME
from fpar.data.synthetic import ground_truth_path, load_ground_truth
from fpar.errors import DataError
from fpar.io.labels import read_labels
from fpar.io.video import read_video

MASK_COLOUR = np.array([255, 40, 40], dtype=np.float32)


def contact_sheet(synth_dir: str | Path, png_path: str | Path, n_clips: int = 4, n_frames: int = 6) -> Path:
    """Write a PNG grid of `n_clips` clips x `n_frames` frames with their ground-truth masks."""
    synth_dir, png_path = Path(synth_dir), Path(png_path)
    rows = _pick_clips(synth_dir / LABELS_NAME, n_clips)
    figure = Figure(figsize=(1.9 * n_frames, 1.6 * len(rows) + 0.3), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), n_frames, squeeze=False)
    for row_axes, (video, label) in zip(axes, rows):
        frames = read_video(video)
        moving, _ = load_ground_truth(ground_truth_path(synth_dir, video))
        for ax, t in zip(row_axes, np.linspace(0, len(frames) - 1, n_frames).round().astype(int)):
            ax.imshow(overlay(frames[t], moving[t]))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"t={t}", fontsize=7)
        row_axes[0].set_ylabel(f"{label}\n{Path(video).stem}", fontsize=7)
    figure.suptitle(f"{synth_dir.name}: frames with the true moving mask (red)", fontsize=9)
    figure.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png_path)
    return png_path


def overlay(frame: np.ndarray, mask: np.ndarray, alpha: float = 0.3) -> np.ndarray:
    """The frame with `mask` tinted and outlined, as uint8 RGB."""
    image = frame.astype(np.float32)
    image[mask] = (1 - alpha) * image[mask] + alpha * MASK_COLOUR
    image = np.clip(image, 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(image, contours, -1, (255, 255, 0), 1)
    return image


def _pick_clips(labels_csv: Path, n_clips: int) -> list[tuple[Path, str]]:
    """(video path, label) of up to `n_clips` clips, cycling through classes and users to show both."""
    if not labels_csv.is_file():
        raise DataError(f"{labels_csv}: not found (run `fpar synth` first)")
    rows = [(segment.video, segment.user, segment.label) for segment in read_labels(labels_csv)]
    labels = list(dict.fromkeys(label for _, _, label in rows))
    users = list(dict.fromkeys(user for _, user, _ in rows))
    picked: list[tuple[Path, str]] = []
    for i in range(min(n_clips, len(rows))):
        wanted = (users[i % len(users)], labels[i % len(labels)])
        fallback = next((video, label) for video, _, label in rows if (video, label) not in picked)
        match = next(((v, lab) for v, u, lab in rows if (u, lab) == wanted and (v, lab) not in picked), fallback)
        picked.append(match)
    return picked
