"""Render one clip: a flat table-top world, seen by a head-mounted camera that moves.

The world is a plane larger than the frame; frame t is the world warped by `camera[t] @ B`
(B: world to frame 0). Because the whole scene is one plane seen through one homography, the
camera's motion is exactly `camera[t]`, and what is left after undoing it is the action alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from fpar.data.synthetic.motion import HAND_UNIT, OBJECT_RADIUS, action_track, camera_path, split_class, wander
from fpar.data.synthetic.scene import add_clutter, draw, hand_parts, object_parts, table_texture, user_style

WORLD_MARGIN = 0.3  # of the frame size on each side: room for the camera to look around
OBJECT_LAYER, HAND_LAYER = 1, 2


@dataclass(frozen=True)
class Clip:
    """A rendered clip and its ground truth."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    moving: np.ndarray  # (T, H, W) bool: pixels of the hand / object that move at frame t
    camera: np.ndarray  # (T, 3, 3) float64: homography from frame 0 to frame t


def render_clip(label: str, frames: int, width: int, height: int, user_key: int, clip_key: int) -> Clip:
    """Draw one clip of class `label`.

    `user_key` fixes the user's look (the same for all their clips); `clip_key` fixes everything
    else. Sub-generators are keyed, so the action, camera, clutter and photometry draw
    independently: two clips with the same `clip_key` and reversed verbs differ only in the action.
    """
    verb, obj = split_class(label)
    track_rng, camera_rng, scene_rng, photo_rng = (np.random.default_rng([clip_key, k]) for k in range(4))
    style = user_style(np.random.default_rng([user_key, 0]))
    margin = np.array([round(WORLD_MARGIN * width), round(WORLD_MARGIN * height)])
    world_w, world_h = width + 2 * margin[0], height + 2 * margin[1]
    pad = round(0.25 * height)
    texture = _user_table(user_key, world_w + pad, world_h + pad, height)
    top, left = scene_rng.integers(0, pad + 1, size=2)
    world = texture[top : top + world_h, left : left + world_w].copy()

    track = action_track(verb, frames, width, height, track_rng)
    add_clutter(world, margin, np.concatenate([track.obj[:, :2], track.hand[:, :2]]), obj, (width, height), scene_rng)
    camera = camera_path(frames, width, height, camera_rng)
    world_to_frame0 = np.array([[1, 0, -margin[0]], [0, 1, -margin[1]], [0, 0, 1]], dtype=np.float64)
    shift = np.array([*margin, 0.0, 0.0])
    layers = [
        (OBJECT_LAYER, object_parts(obj, shade=scene_rng.uniform(0.85, 1.1)), track.obj, OBJECT_RADIUS * height),
        (HAND_LAYER, hand_parts(style, track.spoon_tip), track.hand, HAND_UNIT * height),
    ]
    moving_layers = track.moving()
    look = _Photometry(photo_rng, frames, width, height, style.light)
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    moving = np.empty((frames, height, width), dtype=bool)
    for t in range(frames):
        canvas, labels = world.copy(), np.zeros((world_h, world_w), dtype=np.uint8)
        for layer, parts, poses, unit in layers:
            draw(canvas, labels, parts, poses[t] + shift, unit, layer)
        to_frame = camera[t] @ world_to_frame0
        view = cv2.warpPerspective(canvas, to_frame, (width, height), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT)
        seen = cv2.warpPerspective(labels, to_frame, (width, height), flags=cv2.INTER_NEAREST)
        moving_ids = [layer for (layer, *_), moves in zip(layers, moving_layers[t]) if moves]
        moving[t] = np.isin(seen, moving_ids)
        out[t] = look(view, t)
    return Clip(out, moving, camera)


@lru_cache(maxsize=8)
def _user_table(user_key: int, width: int, height: int, unit: int) -> np.ndarray:
    """The user's table, made once per process: all their clips are cut from it (read-only)."""
    style = user_style(np.random.default_rng([user_key, 0]))
    texture = table_texture(style, (height, width), unit, np.random.default_rng([user_key, 1]))
    texture.flags.writeable = False
    return texture


class _Photometry:
    """The camera's look: defocus blur, a slow light change with a colour cast, sensor noise.

    The noise is fresh every frame (noise that repeats would look like motion to optical flow)
    and grey (chroma noise would mostly vanish in the encoder's colour subsampling anyway).
    """

    def __init__(self, rng: np.random.Generator, frames: int, width: int, height: int, light: float) -> None:
        self.rng = rng
        self.size = (height, width, 1)
        self.blur = rng.uniform(0.4, 1.0) * width / 320
        self.gain = light * (1 + wander(np.arange(frames, dtype=np.float64), rng, 0.08, 0.01, 0.04))
        self.tint = (1 + rng.uniform(-0.06, 0.06, 3)).astype(np.float32)
        self.sigma = np.float32(rng.uniform(1.5, 4.0))

    def __call__(self, view: np.ndarray, t: int) -> np.ndarray:
        image = cv2.GaussianBlur(view, (0, 0), self.blur)
        image *= self.gain[t] * self.tint
        noise = self.rng.standard_normal(self.size, dtype=np.float32)
        image += noise * self.sigma + 0.5  # +0.5: the cast to uint8 below truncates; this rounds
        return np.clip(image, 0, 255, out=image).astype(np.uint8)
