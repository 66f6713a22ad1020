"""sampling.py: the reference's frame rule, and its flow-window rules translated to positions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fpar.data.sampling import (eval_flow_start, flow_window, frame_positions, segment_flow_starts,
                                train_flow_start)


def test_frame_positions_follow_the_reference_linspace_rule() -> None:
    assert frame_positions(50, 7) == [1, 8, 15, 22, 29, 36, 43]
    assert frame_positions(30, 25) == [int(v) for v in np.floor(np.linspace(1, 30, 25, endpoint=False))]


@pytest.mark.parametrize("n", [2, 3, 7, 8, 25, 101])
@pytest.mark.parametrize("count", [1, 7, 25])
def test_frame_positions_skip_position_0_and_stay_in_range(n: int, count: int) -> None:
    positions = frame_positions(n, count)
    assert len(positions) == count
    assert all(1 <= p < n for p in positions)
    assert positions == sorted(positions)
    if n > count:
        assert len(set(positions)) == count


def test_short_videos_repeat_frames_and_too_short_ones_fail() -> None:
    assert frame_positions(3, 5) == [1, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="at least 2 frames"):
        frame_positions(1, 7)


def _reference_eval_file(n: int, stack: int) -> int:
    """Ego-RNN's eval start as a 1-based flow file number."""
    return 1 if n <= stack else int(math.ceil((n - stack) / 2))


@pytest.mark.parametrize("n", [5, 6, 7, 10, 11, 40])
def test_eval_window_is_the_reference_centre_minus_one(n: int) -> None:
    assert eval_flow_start(n, 5) == _reference_eval_file(n, 5) - 1
    assert eval_flow_start(n, 5) + 5 <= n


def test_eval_window_examples() -> None:
    assert [eval_flow_start(n, 5) for n in (5, 6, 7, 10, 11)] == [0, 0, 0, 2, 2]


def test_train_window_draws_every_reference_start_and_only_those() -> None:
    generator = torch.Generator().manual_seed(0)
    starts = {train_flow_start(12, 5, generator) for _ in range(400)}
    assert starts == set(range(0, 12 - 5))  # reference files 1..n-L, i.e. positions 0..n-L-1
    assert train_flow_start(5, 5, generator) == 0


def test_train_window_is_reproducible_from_the_generator() -> None:
    draws = [[train_flow_start(40, 5, torch.Generator().manual_seed(s)) for s in range(10)] for _ in range(2)]
    assert draws[0] == draws[1]


def test_segment_windows_are_evenly_spaced_and_fit() -> None:
    assert segment_flow_starts(25, 5, 5) == [0, 4, 8, 12, 16]
    assert segment_flow_starts(5, 5, 3) == [0, 0, 0]
    for n in range(5, 30):
        starts = segment_flow_starts(n, 5, 4)
        assert starts == [int(f) - 1 for f in np.linspace(1, n - 5 + 1, 4, endpoint=False)]
        assert all(0 <= s and s + 5 <= n for s in starts)


def test_windows_need_enough_flows() -> None:
    assert flow_window(3, 5) == [3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="at least 5 flows"):
        eval_flow_start(4, 5)
    with pytest.raises(ValueError, match="at least 5 flows"):
        train_flow_start(4, 5)
    with pytest.raises(ValueError, match="at least 5 flows"):
        segment_flow_starts(4, 5, 2)
