"""Which positions of a sample a clip reads: N frames spread over the video, L-flow windows.

All numbers here are *positions* (0..n-1 over a sample's sorted files, see `layout.py`); the
reference code speaks in file numbers. Its RGB frames are numbered from 0, so its frame rule is
already in positions. Its flow files are numbered from 1, so every flow rule below is the
reference's rule with ``position = file number - 1``.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def frame_positions(n_frames: int, count: int) -> list[int]:
    """N frame positions spread uniformly: ``floor(linspace(1, n, N, endpoint=False))``.

    As in Ego-RNN, position 0 is never read and every position is below n. With fewer frames
    than asked (n < N) positions repeat (e.g. n=3, N=5 gives 1, 1, 1, 2, 2): the rule stays
    defined for any n >= 2, and the datasets decide whether such short samples are used.
    """
    if count < 1:
        raise ValueError(f"frame count must be >= 1, got {count}")
    if n_frames < 2:
        raise ValueError(f"uniform sampling needs at least 2 frames (position 0 is skipped), got {n_frames}")
    return [int(p) for p in np.floor(np.linspace(1, n_frames, count, endpoint=False))]


def flow_window(start: int, stack: int) -> list[int]:
    """The L consecutive flow positions of a window starting at `start`."""
    return list(range(start, start + stack))


def _check_window(n_flows: int, stack: int) -> None:
    if stack < 1:
        raise ValueError(f"flow stack must be >= 1, got {stack}")
    if n_flows < stack:
        raise ValueError(f"a stack of {stack} flows needs at least {stack} flows, got {n_flows}")


def train_flow_start(n_flows: int, stack: int, generator: torch.Generator | None = None) -> int:
    """Random window start for training, uniform in positions ``[0, n - L - 1]`` (0 when n == L).

    The reference draws file numbers ``randint(1, n - L)`` (both ends included), i.e. positions
    0..n-L-1: its last possible window (position n-L, ending on the last flow) is never drawn.
    We keep that so training sees the same windows as the reference. `generator` None uses
    torch's global RNG (seeded per DataLoader worker).
    """
    _check_window(n_flows, stack)
    if n_flows == stack:
        return 0
    return int(torch.randint(0, n_flows - stack, (1,), generator=generator))


def eval_flow_start(n_flows: int, stack: int) -> int:
    """Centre window start for validation/test: ``ceil((n - L) / 2) - 1``, and 0 when n == L.

    The reference's file number ``ceil((n - L) / 2)`` minus one; when n == L it reads from file 1,
    position 0. (For even n - L this window sits one position left of the exact centre, as in the
    reference.)
    """
    _check_window(n_flows, stack)
    return max(math.ceil((n_flows - stack) / 2) - 1, 0)


def segment_flow_starts(n_flows: int, stack: int, segments: int) -> list[int]:
    """Starts of `segments` evenly spaced windows: ``floor(linspace(0, n - L, S, endpoint=False))``.

    The reference's multi-segment evaluation takes file numbers ``linspace(1, n - L + 1, S,
    endpoint=False)``; minus one gives this. Every window fits (starts stay below n - L + 1).
    """
    _check_window(n_flows, stack)
    if segments < 1:
        raise ValueError(f"segments must be >= 1, got {segments}")
    return [int(s) for s in np.floor(np.linspace(0, n_flows - stack, segments, endpoint=False))]
