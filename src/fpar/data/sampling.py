"""Which positions of a sample a clip reads: N frames spread over the video, L-flow windows.

All numbers here are *positions* (0..n-1 over a sample's sorted files, see `layout.py`); the
reference code speaks in file numbers. Its RGB frames are numbered from 0, so its frame rule is
already in positions. Its flow files are numbered from 1, so every flow rule below is the
reference's rule with ``position = file number - 1``.

Evaluation over several flow windows (``segments``) has two rules in Ego-RNN, both offered here
(`SEGMENT_RULES`, chosen by ``data.segment_rule``): its flow evaluation (``eval-run-flow.py``,
5 windows by default) spreads S starts over the clip without reaching its end, its late-fusion
two-stream evaluation (``eval-run-twoStream.py``, 10 windows by default) runs from the first to
the last training start, both included. (Its joint two-stream evaluation reads one centre window.)
"""

from __future__ import annotations

import math

import numpy as np
import torch


def frame_positions(n_frames: int, count: int) -> list[int]:
    """N frame positions spread uniformly: ``floor(linspace(1, n, N, endpoint=False))``.

    As in Ego-RNN, position 0 is never read and every position is below n. With fewer frames
    than asked (n < N) positions repeat (e.g. n=3, N=5 gives 1, 1, 1, 2, 2), as they do there:
    the reference keeps every instance of at least 5 frames whatever N, and so do the datasets
    (`layout.unusable_reason`). The rule itself is defined for any n >= 2.

    Positions count from the instance's first file in either layout: on Ego-RNN's (files from
    0) they are its file numbers, as there; on the course layout (files from 1: `rgb0001.png`)
    position p is file p + 1, the same frames in time. The MS followers of Ego-RNN apply the
    formula to the course layout's file numbers instead, so they read one file earlier (files
    1..n-1 against our 2..n); ours keeps one rule for both layouts.
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
    """Starts of the flow evaluation's `segments` windows: ``floor(linspace(0, n - L, S, endpoint=False))``.

    The reference's flow evaluation takes file numbers ``linspace(1, n - L + 1, S, endpoint=False)``;
    minus one gives this. Every window fits (starts stay below n - L + 1); the last possible window
    is never read.
    """
    _check_segments(n_flows, stack, segments)
    return [int(s) for s in np.floor(np.linspace(0, n_flows - stack, segments, endpoint=False))]


def two_stream_segment_starts(n_flows: int, stack: int, segments: int) -> list[int]:
    """Starts of the two-stream evaluation's `segments` windows: ``floor(linspace(0, n - L - 1, S))``.

    The reference's two-stream evaluation takes file numbers ``floor(linspace(1, n - L, S))`` with
    the end point, and file 1 for every window when n <= L. Minus one gives positions from 0 to
    n - L - 1: the same range as the training windows (`train_flow_start`), both ends read.
    """
    _check_segments(n_flows, stack, segments)
    if n_flows <= stack:
        return [0] * segments
    return [int(s) for s in np.floor(np.linspace(0, n_flows - stack - 1, segments))]


# data.segment_rule -> the rule giving a multi-window evaluation's starts (see the module docstring)
SEGMENT_RULES = {"flow": segment_flow_starts, "two_stream": two_stream_segment_starts}


def _check_segments(n_flows: int, stack: int, segments: int) -> None:
    _check_window(n_flows, stack)
    if segments < 1:
        raise ValueError(f"segments must be >= 1, got {segments}")
