"""How things move in a synthetic clip: the hand and its object (the action), and the camera.

Positions are frame-0 pixel coordinates. A pose is a row (x, y, angle in degrees, scale); scale > 1
means lifted towards the camera. The hand is a rigid layer (palm, fingers, forearm and, for `stir`,
a spoon), so a pose moves every one of its pixels and the ground truth can say exactly what moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fpar.data.synthetic.presets import OBJECTS, VERBS, split_class  # noqa: F401 (re-exported)

# put_X is take_X played backwards: the pairs that only temporal order can tell apart.
REVERSE_OF = {"put": "take"}

OBJECT_RADIUS = 0.09  # of the frame height: the object's size unit
HAND_UNIT = 0.09  # of the frame height: the hand's size unit
HAND_ANGLE = -30.0  # degrees: a right forearm entering from the bottom right
GRIP = np.array([0.85, 0.55])  # palm centre in object units when the hand holds the object
MOVE_THRESHOLD = 0.2  # pixels: a layer moves when a point of it moves more than this to the next frame


def class_pairs(classes: list[str] | tuple[str, ...]) -> dict[str, list[tuple[str, str]]]:
    """The class pairs evaluation reports on, among `classes`.

    `order_only`: the same frames in reverse time order (take_X, put_X), so one frame cannot decide.
    `object_only`: the same verb on different objects, so motion alone cannot decide.
    """
    parsed = [(label, *split_class(label)) for label in classes]
    order, objects = [], []
    for i, (a, verb_a, obj_a) in enumerate(parsed):
        for b, verb_b, obj_b in parsed[i + 1 :]:
            same_base = REVERSE_OF.get(verb_a, verb_a) == REVERSE_OF.get(verb_b, verb_b)
            if obj_a == obj_b and verb_a != verb_b and same_base:
                order.append((a, b))
            if verb_a == verb_b and obj_a != obj_b:
                objects.append((a, b))
    return {"order_only": order, "object_only": objects}


# What a verb's maker returns: object poses, hand poses, spoon tip (hand units) or None.
Poses = tuple[np.ndarray, np.ndarray, np.ndarray | None]


@dataclass(frozen=True)
class Track:
    """The action of one clip: per-frame poses of the object and the hand."""

    obj: np.ndarray  # (T, 4)
    hand: np.ndarray  # (T, 4)
    spoon_tip: np.ndarray | None  # the spoon's tip in hand units (stir), or None
    height: int  # frame height the poses were drawn for (sets the layers' sizes)

    def reversed(self) -> Track:
        return Track(self.obj[::-1].copy(), self.hand[::-1].copy(), self.spoon_tip, self.height)

    def moving(self) -> np.ndarray:
        """(T, 2) bool: does the object / the hand move at frame t.

        Frame t moves if a point within two size units of the layer's centre moves more than
        MOVE_THRESHOLD pixels by frame t + 1 (flow k runs from frame k to k + 1); the last frame
        repeats the step before it (as motion map n-1 repeats map n-2). The threshold keeps the
        sub-pixel creep at the ends of an eased move out of the ground truth.
        """
        units = (OBJECT_RADIUS * self.height, HAND_UNIT * self.height)
        steps = [_largest_step(poses, 2 * unit) > MOVE_THRESHOLD for poses, unit in zip((self.obj, self.hand), units)]
        step = np.stack(steps, axis=1)
        return np.concatenate([step, step[-1:]], axis=0)


def _largest_step(poses: np.ndarray, reach: float) -> np.ndarray:
    """(T-1,) bound on how far a point within `reach` of the centre moves between frames, in pixels."""
    delta = np.diff(poses, axis=0)
    turn = np.abs(np.deg2rad(delta[:, 2])) * poses[1:, 3]
    return np.linalg.norm(delta[:, :2], axis=1) + reach * (turn + np.abs(delta[:, 3]))


def action_track(verb: str, frames: int, width: int, height: int, rng: np.random.Generator) -> Track:
    """Draw one clip's action; `put` is `take` drawn with the same numbers and reversed in time."""
    if verb in REVERSE_OF:
        return action_track(REVERSE_OF[verb], frames, width, height, rng).reversed()
    r = OBJECT_RADIUS * height
    rest = np.array([width * rng.uniform(0.3, 0.6), height * rng.uniform(0.3, 0.5)])
    angle = rng.uniform(-20.0, 20.0)
    t = np.arange(frames, dtype=np.float64)
    u = t / (frames - 1)
    make = {"take": _take, "shake": _shake, "stir": _stir, "pour": _pour}[verb]
    return Track(*make(t, u, rest, angle, r, height, rng), height)


def _ease(x: np.ndarray) -> np.ndarray:
    """Smoothstep on [0, 1], flat outside: starts and stops without a jerk."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _rotate(points: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """Rotate (T, 2) vectors by (T,) angles (image coordinates, y down)."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    return np.stack([c * points[:, 0] - s * points[:, 1], s * points[:, 0] + c * points[:, 1]], axis=1)


def _holding(obj: np.ndarray, r: float, roll: float = 1.0) -> np.ndarray:
    """Hand poses that grip the object at every frame; the hand turns `roll` times the object's turn."""
    grip = _rotate(np.tile(GRIP * r, (len(obj), 1)), obj[:, 2]) * obj[:, 3:4]
    return np.column_stack([obj[:, :2] + grip, roll * obj[:, 2] + HAND_ANGLE, obj[:, 3]])


def _poses(xy: np.ndarray, angle: np.ndarray | float, scale: np.ndarray | float) -> np.ndarray:
    xy = np.atleast_2d(xy)
    n = len(xy)
    return np.column_stack([xy, np.broadcast_to(angle, n), np.broadcast_to(scale, n)]).astype(np.float64)


def _take(t, u, rest, angle, r, h, rng) -> Poses:
    """Hand reaches the object, grasps (a pause), then lifts it away towards the bottom edge."""
    start = np.array([rest[0] + rng.uniform(0.25, 0.45) * h, h * rng.uniform(1.0, 1.1)])
    dest = np.array([rest[0] + rng.uniform(0.1, 0.4) * h, h * rng.uniform(0.8, 0.95)])
    reach_end = rng.uniform(0.3, 0.4)
    carry_start = reach_end + rng.uniform(0.08, 0.15)
    reach = _ease(u / reach_end)[:, None]
    carry = _ease((u - carry_start) / (1.0 - carry_start))
    obj = _poses(rest + carry[:, None] * (dest - rest), angle + carry * rng.uniform(-25, 25), 1 + 0.3 * carry)
    held = _holding(obj, r)
    twist = rng.uniform(-20.0, 20.0)
    reaching = _poses(start + reach * (held[0, :2] - start), held[0, 2] + (1 - reach[:, 0]) * twist, 1.0)
    hand = np.where((u >= carry_start)[:, None], held, reaching)
    return obj, hand, None


def _shake(t, u, rest, angle, r, h, rng) -> Poses:
    """The held object swings left-right with a small roll, a few times per clip."""
    cycles = rng.uniform(0.1, 0.16)  # per frame
    phase = rng.uniform(0, 2 * np.pi)
    swing = np.sin(2 * np.pi * cycles * t + phase)
    bob = np.sin(4 * np.pi * cycles * t + rng.uniform(0, 2 * np.pi))
    amp = rng.uniform(0.08, 0.13) * h
    xy = rest + np.column_stack([amp * swing, 0.3 * amp * bob])
    obj = _poses(xy, angle + 15.0 * np.sin(2 * np.pi * cycles * t + phase + 1.0), 1.15)
    return obj, _holding(obj, r), None


def _stir(t, u, rest, angle, r, h, rng) -> Poses:
    """The object stays; the hand turns a spoon in circles inside it."""
    hand_angle = HAND_ANGLE + rng.uniform(-10.0, 10.0)
    palm = rest + np.array([0.9, 1.0]) * r
    tip = _rotate((rest - palm)[None, :], np.array([-hand_angle]))[0] / (HAND_UNIT * h)
    turn = 2 * np.pi * rng.uniform(0.08, 0.14) * t + rng.uniform(0, 2 * np.pi)
    circle = 0.35 * r * np.column_stack([np.cos(turn), np.sin(turn)])
    obj = _poses(np.tile(rest, (len(t), 1)), angle, 1.0)
    return obj, _poses(palm + circle, hand_angle, 1.0), tip


def _pour(t, u, rest, angle, r, h, rng) -> Poses:
    """The held object is lifted a little, tilted far to one side, and tilted back."""
    lift_end = rng.uniform(0.2, 0.35)
    lift = _ease(u / lift_end)
    shift = np.array([rng.uniform(-0.15, 0.15) * h, -rng.uniform(0.08, 0.15) * h])
    tilt = np.sin(np.pi * _ease((u - lift_end) / (1.0 - lift_end)))
    peak = rng.choice([-1.0, 1.0]) * rng.uniform(55.0, 85.0)
    obj = _poses(rest + lift[:, None] * shift, angle + peak * tilt, 1.0 + 0.15 * lift)
    return obj, _holding(obj, r, roll=0.35), None  # the wrist turns, the forearm hardly


def wander(t: np.ndarray, rng: np.random.Generator, amplitude: float, low: float, high: float) -> np.ndarray:
    """A smooth random sinusoid of `low`..`high` cycles per frame that is 0 at frame 0."""
    value = amplitude * np.sin(2 * np.pi * rng.uniform(low, high) * t + rng.uniform(0, 2 * np.pi))
    return value - value[0]


def _head_shift(t: np.ndarray, pan: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """Shift along one axis in pixels: the pan (a fraction of `side`), a slow wander and a head shake."""
    return pan * side + wander(t, rng, 0.025 * side, 0.01, 0.04) + wander(t, rng, 0.015 * side, 0.12, 0.2)


def camera_path(frames: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """(T, 3, 3) homographies mapping frame 0 to frame t: the head's pan, roll, zoom, tilt and shake.

    A pan of 8-18 % of the frame over the clip, a slow wander, and a head shake of 1.5 % of the
    frame at 0.12-0.2 cycles per frame: at 320x240 the background moves about 4 px a frame, so
    flow without camera compensation is mostly camera.
    """
    t = np.arange(frames, dtype=np.float64)
    pan = rng.uniform(0.08, 0.18) * _ease(t / (frames - 1))
    heading = rng.uniform(0, 2 * np.pi)
    tx = _head_shift(t, pan * np.cos(heading), width, rng)
    ty = _head_shift(t, pan * np.sin(heading), height, rng)
    roll = np.deg2rad(wander(t, rng, 3.0, 0.01, 0.05) + wander(t, rng, 0.5, 0.12, 0.2))
    zoom = np.exp(wander(t, rng, 0.05, 0.01, 0.04))
    px = wander(t, rng, 0.03 / (width / 2), 0.01, 0.04)
    py = wander(t, rng, 0.03 / (height / 2), 0.01, 0.04)
    centre = np.array([[1, 0, width / 2], [0, 1, height / 2], [0, 0, 1]], dtype=np.float64)
    uncentre = np.linalg.inv(centre)
    homographies = np.empty((frames, 3, 3))
    for k in range(frames):
        c, s = zoom[k] * np.cos(roll[k]), zoom[k] * np.sin(roll[k])
        local = np.array([[c, -s, tx[k]], [s, c, ty[k]], [px[k], py[k], 1.0]])
        h = centre @ local @ uncentre
        homographies[k] = h / h[2, 2]
    return homographies
