"""How much untrusted input CAM accepts. Light (no torch, PyAV or OpenCV): the CLI's help reads it."""

from __future__ import annotations

from dataclasses import dataclass

MAX_MEGABYTES = 200
MAX_FRAMES = 900  # 30 s at 30 fps; the frames of an input are held in memory at display size


@dataclass(frozen=True)
class Limits:
    """File size in MB and decoded frames; larger or longer inputs are refused with a message."""

    max_megabytes: float = MAX_MEGABYTES
    max_frames: int = MAX_FRAMES
