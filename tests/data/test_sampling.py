"""sampling.py against indices worked out by hand from Ego-RNN's rules (DESIGN section 7).

Each expected list below was computed on paper from the reference's rule, not from the code:
frames ``floor(linspace(1, n, N, endpoint=False))``; flow windows in 1-based file numbers, so
a position is the file number minus one. The working is in the comments.
"""

from __future__ import annotations

import pytest
import torch

from fpar.data.sampling import (SEGMENT_RULES, eval_flow_start, flow_window, frame_positions,
                                segment_flow_starts, train_flow_start, two_stream_segment_starts)


def test_frame_positions_are_the_reference_linspace_floored() -> None:
    # n=10, N=7: 1 + k * 9/7 = 1, 2.29, 3.57, 4.86, 6.14, 7.43, 8.71
    assert frame_positions(10, 7) == [1, 2, 3, 4, 6, 7, 8]
    # n=50, N=7: 1 + 7k
    assert frame_positions(50, 7) == [1, 8, 15, 22, 29, 36, 43]
    # n=9 (a two-stream clip of 10 frames spread over its 9 flows, as Ego-RNN does): 1 + k * 8/7
    assert frame_positions(9, 7) == [1, 2, 3, 4, 5, 6, 7]


def test_fewer_frames_than_asked_repeat_them_as_the_reference_does() -> None:
    # n=3, N=5: 1, 1.4, 1.8, 2.2, 2.6
    assert frame_positions(3, 5) == [1, 1, 1, 2, 2]
    # n=5 (the fewest frames an RGB dataset keeps), N=25: 1 + 0.16k reaches 2 at k=6.25, 3 at 12.5, 4 at 18.75
    assert frame_positions(5, 25) == [1] * 7 + [2] * 6 + [3] * 6 + [4] * 6
    with pytest.raises(ValueError, match="at least 2 frames"):
        frame_positions(1, 7)


@pytest.mark.parametrize("n", [2, 3, 7, 8, 25, 101])
@pytest.mark.parametrize("count", [1, 7, 25])
def test_frame_positions_skip_position_0_and_stay_in_range(n: int, count: int) -> None:
    positions = frame_positions(n, count)
    assert len(positions) == count
    assert all(1 <= p < n for p in positions)
    assert positions == sorted(positions)
    if n > count:
        assert len(set(positions)) == count


def test_eval_window_is_the_reference_centre_minus_one() -> None:
    # file ceil((n - 5) / 2), or file 1 when n <= L: n=5 -> 1, 6 -> 1, 7 -> 1, 10 -> 3, 11 -> 3, 40 -> 18
    assert [eval_flow_start(n, 5) for n in (5, 6, 7, 10, 11, 40)] == [0, 0, 0, 2, 2, 17]


def test_train_window_draws_every_reference_start_and_only_those() -> None:
    # files randint(1, n - L) = 1..7 for n=12, L=5: positions 0..6 (never 7, the window ending on the last flow)
    generator = torch.Generator().manual_seed(0)
    starts = {train_flow_start(12, 5, generator) for _ in range(400)}
    assert starts == {0, 1, 2, 3, 4, 5, 6}
    assert train_flow_start(5, 5, generator) == 0


def test_train_window_is_reproducible_from_the_generator() -> None:
    draws = [[train_flow_start(40, 5, torch.Generator().manual_seed(s)) for s in range(10)] for _ in range(2)]
    assert draws[0] == draws[1]


def test_flow_evaluation_windows() -> None:
    # files linspace(1, n - L + 1, S, endpoint=False); n=25, L=5, S=5: 1, 5, 9, 13, 17
    assert segment_flow_starts(25, 5, 5) == [0, 4, 8, 12, 16]
    # n=12: linspace(1, 8, 5, endpoint=False) = 1, 2.4, 3.8, 5.2, 6.6 -> files 1, 2, 3, 5, 6
    assert segment_flow_starts(12, 5, 5) == [0, 1, 2, 4, 5]
    assert segment_flow_starts(5, 5, 3) == [0, 0, 0]  # n <= L: file 1 for every window


def test_two_stream_evaluation_windows_include_the_end_point() -> None:
    # files floor(linspace(1, n - L, S)); n=12, L=5, S=5: 1, 2.5, 4, 5.5, 7 -> files 1, 2, 4, 5, 7
    assert two_stream_segment_starts(12, 5, 5) == [0, 1, 3, 4, 6]
    # n=25, S=10 (the reference's default): 1 + k * 19/9 = 1, 3.1, 5.2, 7.3, 9.4, 11.6, 13.7, 15.8, 17.9, 20
    assert two_stream_segment_starts(25, 5, 10) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 19]
    assert two_stream_segment_starts(6, 5, 3) == [0, 0, 0]  # linspace(1, 1, 3): file 1 three times
    assert two_stream_segment_starts(5, 5, 2) == [0, 0]  # n <= L: file 1 for every window


def test_segment_rules_are_named_as_the_config_names_them() -> None:
    assert SEGMENT_RULES == {"flow": segment_flow_starts, "two_stream": two_stream_segment_starts}


@pytest.mark.parametrize("rule", [segment_flow_starts, two_stream_segment_starts])
def test_every_segment_window_fits(rule) -> None:
    for n in range(5, 40):
        assert all(0 <= s and s + 5 <= n for s in rule(n, 5, 7))


def test_windows_need_enough_flows() -> None:
    assert flow_window(3, 5) == [3, 4, 5, 6, 7]
    for call in (lambda: eval_flow_start(4, 5), lambda: train_flow_start(4, 5),
                 lambda: segment_flow_starts(4, 5, 2), lambda: two_stream_segment_starts(4, 5, 2)):
        with pytest.raises(ValueError, match="at least 5 flows"):
            call()
    with pytest.raises(ValueError, match="segments must be >= 1"):
        two_stream_segment_starts(10, 5, 0)
