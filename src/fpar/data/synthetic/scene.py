"""What a synthetic clip looks like: the user's table, static clutter, the objects and the hand.

Everything is drawn as filled polygons with sub-pixel precision (OpenCV `shift`), so the same
call that paints a layer can paint its ground-truth label image, pixel for pixel.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

from fpar.data.synthetic.motion import OBJECT_RADIUS, OBJECTS

RGB = tuple[float, float, float]
# A part of a drawing: its contours in local units (a second contour cuts a hole) and its colour.
Part = tuple[list[np.ndarray], RGB]

OBJECT_COLOURS: dict[str, RGB] = {"cup": (205, 45, 40), "box": (40, 85, 200), "bottle": (35, 150, 70)}
SKIN_TONES: tuple[RGB, ...] = ((236, 192, 163), (214, 163, 124), (176, 124, 88), (122, 82, 58), (226, 178, 140))
SHIFT = 4  # OpenCV fixed-point bits: polygons are placed to 1/16 pixel


@dataclass(frozen=True)
class UserStyle:
    """What stays the same across one user's clips: their table, their skin and sleeve, their light."""

    table: np.ndarray  # RGB base colour of the table
    pattern: str  # "checks", "grain" or "tiles"
    period: float  # of the frame height
    contrast: float
    skin: RGB
    sleeve: RGB
    light: float  # overall brightness gain


def user_style(rng: np.random.Generator) -> UserStyle:
    """Draw a user's look; users differ in all of it, so leaving one out is a domain shift."""
    table = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 0.55), rng.uniform(0.45, 0.75))) * 255
    skin = np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))]) + rng.uniform(-8, 8, 3)
    sleeve = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.3, 0.8), rng.uniform(0.25, 0.8))) * 255
    return UserStyle(
        table=table,
        pattern=str(rng.choice(["checks", "grain", "tiles"])),
        period=rng.uniform(0.08, 0.2),
        contrast=rng.uniform(0.12, 0.3),
        skin=tuple(skin.tolist()),
        sleeve=tuple(sleeve.tolist()),
        light=rng.uniform(0.85, 1.1),
    )


def _value_noise(shape: tuple[int, int], cell: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth noise in [0, 1] with features about `cell` pixels wide."""
    h, w = shape
    cell = max(cell, 2)
    grid = rng.random((h // cell + 3, w // cell + 3)).astype(np.float32)
    big = cv2.resize(grid, (grid.shape[1] * cell, grid.shape[0] * cell), interpolation=cv2.INTER_CUBIC)
    return big[cell : cell + h, cell : cell + w]


def table_texture(style: UserStyle, shape: tuple[int, int], unit: float, rng: np.random.Generator) -> np.ndarray:
    """The user's table top (float32 RGB): a pattern, noise at three scales and specks.

    The texture is what lets a feature matcher find the camera's homography, so it has corners
    and blobs at many scales. `unit` is the frame height the sizes are relative to.
    """
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    period = style.period * unit
    low = _value_noise(shape, int(unit / 4), rng)
    if style.pattern == "checks":
        pattern = ((x // period + y // period) % 2) * 2 - 1
    elif style.pattern == "grain":
        pattern = np.sin(2 * np.pi * (y + 0.8 * period * low) / period)
    else:
        tiles = rng.uniform(-1, 1, (int(h // period) + 2, int(w // period) + 2)).astype(np.float32)
        pattern = tiles[(y // period).astype(int), (x // period).astype(int)]
        pattern[(x % period < 2) | (y % period < 2)] = -2.5
    noise = 0.5 * low + 0.3 * _value_noise(shape, int(unit / 16), rng) + 0.2 * _value_noise(shape, 3, rng)
    shade = 1 + style.contrast * pattern + 0.45 * (noise - 0.5)
    image = np.ascontiguousarray(shade[..., None] * style.table[None, None, :], dtype=np.float32)
    for _ in range(h * w // 250):
        centre = (int(rng.integers(w)), int(rng.integers(h)))
        tone = float(rng.uniform(-70, 70))
        colour = tuple(float(c) for c in np.clip(style.table + tone, 0, 255))
        cv2.circle(image, centre, int(rng.integers(1, 3)), colour, -1)
    return image


def _ellipse(rx: float, ry: float, cx: float = 0.0, cy: float = 0.0, n: int = 28) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + rx * np.cos(a), cy + ry * np.sin(a)])


def _rect(w: float, h: float, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    return np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]]) + [cx, cy]


def _trapezoid(top: float, top_half: float, bottom: float, bottom_half: float) -> np.ndarray:
    return np.array([[-top_half, top], [top_half, top], [bottom_half, bottom], [-bottom_half, bottom]])


def _tone(colour: RGB, factor: float) -> RGB:
    return tuple(float(min(255.0, c * factor)) for c in colour)


def object_parts(name: str, shade: float = 1.0) -> list[Part]:
    """An object in units of OBJECT_RADIUS, centred at 0: shape and colour tell objects apart."""
    c = _tone(OBJECT_COLOURS[name], shade)
    if name == "cup":
        return [
            ([_ellipse(0.38, 0.5, 0.8, 0.15), _ellipse(0.2, 0.3, 0.8, 0.15)], _tone(c, 0.8)),
            ([_trapezoid(-0.7, 0.75, 0.95, 0.6)], c),
            ([_rect(1.3, 0.3, 0, 0.35)], (235, 235, 220)),
            ([_ellipse(0.75, 0.28, 0, -0.7)], _tone(c, 0.85)),
            ([_ellipse(0.62, 0.2, 0, -0.7)], (70, 40, 25)),
        ]
    if name == "box":
        return [
            ([_rect(2.0, 1.4)], c),
            ([_rect(2.0, 0.3, 0, -0.55)], _tone(c, 0.7)),
            ([_rect(0.3, 1.4, 0.45, 0)], (230, 200, 40)),
            ([_rect(0.55, 0.4, -0.5, 0.15)], (240, 240, 240)),
        ]
    return [
        ([_rect(0.8, 1.7, 0, 0.45)], c),
        ([_trapezoid(-0.75, 0.18, -0.4, 0.4)], c),
        ([_rect(0.36, 0.45, 0, -0.95)], _tone(c, 0.8)),
        ([_rect(0.44, 0.25, 0, -1.25)], (225, 225, 225)),
        ([_rect(0.8, 0.55, 0, 0.5)], (240, 230, 200)),
        ([_rect(0.8, 0.1, 0, 0.5)], _tone(c, 0.6)),
    ]


def hand_parts(style: UserStyle, spoon_tip: np.ndarray | None) -> list[Part]:
    """A right hand in units of HAND_UNIT: palm at 0, fingers up, a striped sleeve down and out."""
    skin, sleeve = style.skin, style.sleeve
    parts: list[Part] = []
    if spoon_tip is not None:
        tip = np.asarray(spoon_tip, dtype=np.float64)
        direction = tip / np.linalg.norm(tip)
        normal = np.array([-direction[1], direction[0]]) * 0.07
        handle = np.array([-normal, normal, tip + normal, tip - normal])
        parts += [([handle], (185, 185, 195)), ([_ellipse(0.28, 0.28, *tip)], (160, 160, 172))]
    parts += [([_rect(1.1, 15.3, 0, 8.35)], sleeve)]
    parts += [([_rect(1.1, 0.18, 0, 0.7 + k)], _tone(sleeve, 0.6)) for k in range(1, 15)]
    parts += [([_rect(0.8, 0.6, 0, 0.55)], _tone(skin, 0.92)), ([_ellipse(0.55, 0.6)], skin)]
    for x in (-0.36, -0.12, 0.12, 0.36):
        parts += [([_rect(0.22, 0.75, x, -0.8)], _tone(skin, 0.97)), ([_rect(0.22, 0.05, x, -0.7)], _tone(skin, 0.75))]
    thumb = _ellipse(0.17, 0.45) @ np.array([[np.cos(0.6), np.sin(0.6)], [-np.sin(0.6), np.cos(0.6)]]) + [-0.6, -0.1]
    parts += [([thumb], _tone(skin, 0.95)), ([_rect(0.9, 0.06, 0, -0.42)], _tone(skin, 0.8))]
    return parts


def draw(
    canvas: np.ndarray, labels: np.ndarray | None, parts: list[Part], pose: np.ndarray, unit: float, layer: int = 0
) -> None:
    """Paint `parts` at `pose` (x, y, degrees, scale) into canvas and, if given, `layer` into labels."""
    a = np.deg2rad(pose[2])
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * unit * pose[3]
    for contours, colour in parts:
        fixed = [np.round((c @ rotation.T + pose[:2]) * (1 << SHIFT)).astype(np.int32) for c in contours]
        cv2.fillPoly(canvas, fixed, colour, lineType=cv2.LINE_8, shift=SHIFT)
        if labels is not None:
            cv2.fillPoly(labels, fixed, layer, lineType=cv2.LINE_8, shift=SHIFT)


def add_clutter(
    world: np.ndarray,
    offset: np.ndarray,
    avoid: np.ndarray,
    manipulated: str,
    size: tuple[int, int],
    rng: np.random.Generator,
) -> None:
    """Static distractors (plates, napkins, sometimes another class's object) away from the action.

    `avoid` holds frame-0 points the action passes through; `offset` moves frame-0 into world.
    """
    width, height = size
    r = OBJECT_RADIUS * height
    kinds = ["plate", "napkin"] + (["object"] if rng.random() < 0.6 else [])
    for kind in kinds + list(rng.choice(["plate", "napkin"], size=int(rng.integers(0, 2)))):
        for _ in range(30):
            centre = np.array([rng.uniform(0.05, 0.95) * width, rng.uniform(0.05, 0.95) * height])
            if np.min(np.linalg.norm(avoid - centre, axis=1)) > 2.6 * r:
                break
        else:
            continue
        pose = np.array([*(centre + offset), rng.uniform(-90, 90), rng.uniform(0.8, 1.2)])
        if kind == "plate":
            rx = rng.uniform(1.2, 1.7)
            white = _tone((238, 236, 230), rng.uniform(0.85, 1.0))
            parts = [([_ellipse(rx, 0.75 * rx)], white), ([_ellipse(0.7 * rx, 0.5 * rx)], _tone(white, 0.9))]
        elif kind == "napkin":
            colour = tuple(np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 0.5), 0.9)) * 255)
            w, h = rng.uniform(1.5, 2.5), rng.uniform(1.0, 2.0)
            parts = [([_rect(w, h)], colour)] + [([_rect(w, 0.12, 0, y)], _tone(colour, 0.7)) for y in (-h / 4, h / 4)]
        else:
            other = [o for o in OBJECTS if o != manipulated]
            parts = object_parts(str(rng.choice(other)))
        draw(world, None, parts, pose, r)
