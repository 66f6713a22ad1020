"""Moving / not-moving maps from warp flow.

Rule (one map per flow, so map k comes from flow k, frame k -> k+1):

1. ``m`` = magnitude of the warp flow (px/frame), the camera already removed.
2. Moving where ``m > max(min_flow, otsu(m))``: Otsu's threshold splits the frame's magnitudes
   into the background's residual and what moves, so it follows the speed of the action and a
   frame whose camera model was poor (a raised residual everywhere) does not turn wholly
   "moving"; `min_flow` keeps flow noise out of frames where nothing moves, where Otsu would
   split the noise itself. (On the synthetic set this beat a fixed threshold and a multiple of
   the median by 0.03-0.04 IoU; docs/prepare.md.)
3. Clean: a morphological opening removes speckle, a closing fills small holes inside hands and
   objects, and connected components smaller than `min_area` (share of the frame) are dropped.

Files: 8-bit grayscale PNG at the frame's resolution, 255 = moving, 0 = not moving (visible in an
image viewer, unlike 0/1). Readers binarise with ``> layout.MAP_THRESHOLD`` (127), which also
survives a resize with interpolation. A sample of n frames has n maps: map k belongs to frame k,
and the last frame, which has no outgoing flow, repeats map n-2.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fpar.data.layout import MAP_THRESHOLD

MOVING = 255


@dataclass(frozen=True)
class MotionRule:
    """The motion-map threshold rule; defaults tuned on the synthetic set at 320x240 (docs/prepare.md)."""

    min_flow: float = 1.0  # px/frame
    kernel: int = 5  # px, opening/closing structuring element (odd)
    min_area: float = 0.003  # share of the frame's pixels


_OTSU_LEVELS = 8.0  # magnitude histogram bins per px/frame (Otsu needs 8-bit input; 255 bins ~ 32 px)


def motion_map(flow: np.ndarray, rule: MotionRule = MotionRule()) -> np.ndarray:
    """uint8 map (0 / `MOVING`) of where the (H, W, 2) warp flow says something moves."""
    magnitude = cv2.magnitude(flow[..., 0], flow[..., 1])  # 6x faster than np.linalg.norm here
    moving = (magnitude > _threshold(magnitude, rule.min_flow)).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (rule.kernel, rule.kernel))
    moving = cv2.morphologyEx(moving, cv2.MORPH_OPEN, kernel)
    moving = cv2.morphologyEx(moving, cv2.MORPH_CLOSE, kernel)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(moving, connectivity=8)
    big = stats[:, cv2.CC_STAT_AREA] >= rule.min_area * moving.size
    big[0] = False  # component 0 is the background
    return np.where(big[labels], MOVING, 0).astype(np.uint8)


def is_moving(image: np.ndarray) -> np.ndarray:
    """bool mask of a motion-map image as read from disk."""
    return image > MAP_THRESHOLD


def _threshold(magnitude: np.ndarray, min_flow: float) -> float:
    if magnitude.max() <= min_flow:
        return min_flow
    levels = np.clip(magnitude * _OTSU_LEVELS, 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(levels, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return max(min_flow, otsu / _OTSU_LEVELS)
