"""What `fpar synth` can make and its presets: verbs, objects, class lists and `SynthConfig`.

Light on purpose (no numpy, av or cv2): the CLI's help text shows these defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fpar.errors import FparError

VERBS = ("take", "put", "shake", "stir", "pour")
OBJECTS = ("cup", "box", "bottle")
# Two take/put pairs (order-only), three same-verb pairs (object-only), stir and pour for variety.
DEFAULT_CLASSES = ("take_cup", "put_cup", "take_box", "put_box", "shake_box", "shake_bottle", "pour_bottle", "stir_cup")
# The smallest set that still has an order-only pair (take_cup/put_cup) and an object-only pair.
TINY_CLASSES = ("take_cup", "put_cup", "take_box", "shake_box")
MIN_SIZE = (64, 48)
MIN_FRAMES = 8


def split_class(label: str) -> tuple[str, str]:
    """`take_cup` -> ("take", "cup"); FparError if the verb or the object is not one we can draw."""
    verb, _, obj = label.partition("_")
    if verb not in VERBS:
        raise FparError(f"class {label!r}: unknown verb {verb!r}; known verbs: {', '.join(VERBS)}")
    if obj not in OBJECTS:
        raise FparError(f"class {label!r}: unknown object {obj!r}; known objects: {', '.join(OBJECTS)}")
    return verb, obj


@dataclass
class SynthConfig:
    """What `synthesize` makes. Defaults: 4 users x 8 classes x 5 clips = 160 clips of 24 frames."""

    users: list[str] = field(default_factory=lambda: ["S1", "S2", "S3", "S4"])
    classes: list[str] = field(default_factory=lambda: list(DEFAULT_CLASSES))
    clips_per_class: int = 5  # per user: a held-out user gets 5 clips of every class
    width: int = 320
    height: int = 240
    frames: int = 24
    fps: int = 12
    seed: int = 0

    @classmethod
    def tiny(cls) -> SynthConfig:
        """The smallest useful set (tests, `fpar demo --tiny`): 4 users x 4 classes x 2 clips, 128x96, 16 frames."""
        return cls(classes=list(TINY_CLASSES), clips_per_class=2, width=128, height=96, frames=16)

    def validate(self) -> None:
        """Raise FparError naming the first bad option."""
        if not self.users or len(set(self.users)) != len(self.users):
            raise FparError(f"users must be a non-empty list of distinct names, got {self.users}")
        for user in self.users:
            if not re.fullmatch(r"[A-Za-z0-9-]+", user):
                raise FparError(f"user {user!r}: use letters, digits and '-' only (it becomes part of file names)")
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise FparError(f"classes must be a non-empty list of distinct names, got {self.classes}")
        for label in self.classes:
            split_class(label)
        if self.clips_per_class < 1:
            raise FparError(f"clips per class must be at least 1, got {self.clips_per_class}")
        if self.width < MIN_SIZE[0] or self.height < MIN_SIZE[1] or self.width % 2 or self.height % 2:
            raise FparError(f"size {self.width}x{self.height}: need even sides of at least {MIN_SIZE[0]}x{MIN_SIZE[1]}")
        if self.frames < MIN_FRAMES:
            raise FparError(f"frames must be at least {MIN_FRAMES}, got {self.frames}")
        if self.fps < 1 or self.seed < 0:
            raise FparError(f"fps must be >= 1 and seed >= 0, got fps={self.fps}, seed={self.seed}")
