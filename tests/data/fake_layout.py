"""Tiny fake dataset roots on disk, written through `Layout.path` as `fpar prepare` writes them.

Pixel values encode positions, so a test can tell which file a loaded tensor came from and pin
the position alignment: frame p is uniform gray `frame_value(p)`, flow k (frame k -> k+1) of axis
a is `flow_value(a, k)`, and motion map k is moving (255) exactly when k is odd. Uniform images
survive resizing, cropping and JPEG nearly unchanged, so `position_of` recovers the position.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fpar.data.layout import Layout

STEP = 10  # gray levels between consecutive positions: far above JPEG's error on flat images
BASES = {"rgb": 5, "x": 3, "y": 7}


def frame_value(position: int) -> int:
    return BASES["rgb"] + STEP * position


def flow_value(axis: str, position: int) -> int:
    return BASES[axis] + STEP * position


def map_value(position: int) -> int:
    return 255 if position % 2 else 0


def position_of(gray: float, kind: str) -> int:
    """Invert `frame_value` / `flow_value` (kind "rgb", "x" or "y")."""
    return round((gray - BASES[kind]) / STEP)


@dataclass(frozen=True)
class FakeInstance:
    """One instance to write; flows default to frames - 1 and maps to frames (as prepare writes)."""

    user: str
    label: str
    instance: str = "1"
    frames: int = 10
    flows: int | None = None
    flows_y: int | None = None  # y flows, when they should differ from x
    maps: int | None = None


DEFAULT_INSTANCES = (
    FakeInstance("S1", "open_jam", "1"),
    FakeInstance("S1", "open_jam", "2", frames=12),
    FakeInstance("S1", "put_tea", "1"),
    FakeInstance("S1", "take_cup", "1"),
    FakeInstance("S2", "open_jam", "1", frames=9),
    FakeInstance("S2", "take_cup", "1"),
    FakeInstance("S2", "take_cup", "2"),
)


def _save(path: Path, value: int, size: tuple[int, int], rgb: bool) -> None:
    width, height = size
    shape = (height, width, 3) if rgb else (height, width)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)


def write_root(root: Path, layout: Layout, instances: tuple[FakeInstance, ...] = DEFAULT_INSTANCES,
               size: tuple[int, int] = (32, 24)) -> Path:
    """Write `instances` under `root` in `layout`; returns `root`."""
    for inst in instances:
        assert frame_value(inst.frames - 1) < 256, "gray levels encode positions: at most 25 frames"
        key = (inst.user, inst.label, inst.instance)
        n_x = inst.frames - 1 if inst.flows is None else inst.flows
        counts = {"rgb": inst.frames, "flow_x": n_x, "flow_y": n_x if inst.flows_y is None else inst.flows_y,
                  "mmaps": inst.frames if inst.maps is None else inst.maps}
        values = {"rgb": frame_value, "flow_x": lambda k: flow_value("x", k),
                  "flow_y": lambda k: flow_value("y", k), "mmaps": map_value}
        for modality in layout.modalities:
            for position in range(counts[modality]):
                _save(layout.path(root, modality, *key, position), values[modality](position), size,
                      rgb=modality == "rgb")
    return root
