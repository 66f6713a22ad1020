"""Still frames of synthetic users for pre-training: the demo's stand-in for ImageNet.

The demo has no ImageNet weights. Pre-training a ResNet-34 on single frames of the demo's own
training users does not stand in for them: with three users' tables the network learns the
tables (measured: 96% frame accuracy on their frames, chance on a fourth user's), so the action
models collapse on the held-out user. ImageNet's strength is many scenes; here that is many
users. So the warm-up renders frames of users the data set does not have (their own names and
seed, so their tables, skin and light are independent draws, never those of S1..S4) with the
same renderer as `fpar synth`, and labels each frame with its clip's class.

A frame is one still of a rendered clip, so it carries the object and the hand's pose but no
temporal order: take_X and put_X frames look alike, and the order stays for the action models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from fpar.data.synthetic.dataset import stable_key
from fpar.data.synthetic.presets import split_class
from fpar.data.synthetic.render import render_clip

FRAME_STEP = 2  # keep every other rendered frame: neighbours are nearly the same picture


@dataclass(frozen=True)
class Frames:
    """Rendered stills: images (N, H, W, 3) uint8, labels (N,) int64 indices into the class list."""

    images: np.ndarray
    labels: np.ndarray


def corpus_users(prefix: str, count: int) -> list[str]:
    """User names `prefix01`, `prefix02`, ..., `count` of them."""
    return [f"{prefix}{number:02d}" for number in range(1, count + 1)]


def render_frames(classes: list[str], users: list[str], clips_per_class: int, frames: int,
                  size: tuple[int, int], seed: int, desc: str = "corpus") -> Frames:
    """`frames` stills of `clips_per_class` clips of every class for every user, at `size` (w, h).

    Deterministic from (seed, user, clip): the same call gives the same pixels anywhere. Raises
    FparError naming a class whose verb or object the renderer cannot draw.
    """
    for label in classes:
        split_class(label)
    width, height = size
    images, labels = [], []
    jobs = [(user, index, label, k) for user in users for index, label in enumerate(classes)
            for k in range(clips_per_class)]
    for user, index, label, k in tqdm(jobs, desc=desc, unit="clip", dynamic_ncols=True):
        clip = render_clip(label, frames * FRAME_STEP, width, height, stable_key(seed, "user", user),
                           stable_key(seed, "clip", f"{user}_{label}_{k:02d}"))
        images.append(np.asarray(clip.frames[::FRAME_STEP]))
        labels.extend([index] * frames)
    return Frames(np.concatenate(images), np.asarray(labels, dtype=np.int64))
