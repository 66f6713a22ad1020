"""Tiny test videos with known camera motion: a textured table seen by a panning, rotating camera,
and a textured blob that moves on its own (the "hand")."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fpar.io import video as media

WIDTH, HEIGHT = 96, 72


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """RGB uint8 texture with structure at several scales (corners for the tracker, gradients for flow)."""
    rng = np.random.default_rng(seed)
    layers = [cv2.resize(rng.random((height // s, width // s, 3), dtype=np.float32), (width, height),
                         interpolation=cv2.INTER_CUBIC) for s in (2, 6, 16)]
    image = sum(layers) / len(layers)
    return (255 * (image - image.min()) / (image.max() - image.min())).astype(np.uint8)


def camera(t: int) -> np.ndarray:
    """Homography mapping frame 0 to frame t: a slow pan with a little rotation and zoom."""
    angle, scale = np.deg2rad(0.6 * t), 1.0 + 0.004 * t
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    cx, cy = WIDTH / 2, HEIGHT / 2
    return np.array([[c, -s, cx - c * cx + s * cy + 1.5 * t],
                     [s, c, cy - s * cx - c * cy + 0.8 * t],
                     [0, 0, 1]])


def render(n: int, blob: bool = True, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """n frames of the scene and the (n, H, W) bool masks of the moving blob."""
    scene, skin = texture(WIDTH, HEIGHT, seed), texture(WIDTH, HEIGHT, seed + 100) // 2 + 100
    frames, masks = [], []
    for t in range(n):
        frame = cv2.warpPerspective(scene, camera(t), (WIDTH, HEIGHT), borderMode=cv2.BORDER_REFLECT)
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        if blob:
            cv2.circle(mask, (20 + 4 * t, 40), 10, 1, -1)
            moved = cv2.warpAffine(skin, np.float32([[1, 0, 4 * t], [0, 1, 0]]), (WIDTH, HEIGHT))
            frame[mask == 1] = moved[mask == 1]
        frames.append(frame)
        masks.append(mask.astype(bool))
    return frames, np.array(masks)


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    """H.264 at high quality (CRF 12), as raw videos come; the library's writer."""
    media.write_video(path, np.stack(frames), fps=10, crf=12)
    return path


def files_of(root: Path) -> dict[str, str]:
    """Every file under `root` (hidden ones included) by relative path -> SHA-1 of its bytes."""
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
