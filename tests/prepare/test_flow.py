"""Per-frame pieces: quantisation, the camera homography, warp flow, motion maps."""

from __future__ import annotations

import numpy as np
import pytest

from prepare_helpers import HEIGHT, WIDTH, camera, render
from fpar.prepare.flow import FLOW_METHODS, FlowComputer, dequantise, estimate_homography, quantise, to_gray
from fpar.prepare.motion_maps import MOVING, MotionRule, is_moving, motion_map


def _corners(homography: np.ndarray) -> np.ndarray:
    points = np.array([[0, 0, 1], [WIDTH - 1, 0, 1], [0, HEIGHT - 1, 1], [WIDTH - 1, HEIGHT - 1, 1]], float).T
    mapped = homography @ points
    return (mapped[:2] / mapped[2]).T


def _magnitude(flow: np.ndarray) -> np.ndarray:
    return np.linalg.norm(flow, axis=2)


def test_quantise_round_trip_is_within_half_a_step_and_clips() -> None:
    bound = 20.0
    flow = np.random.default_rng(0).uniform(-bound, bound, (50, 60, 2)).astype(np.float32)
    image = quantise(flow, bound)
    assert image.dtype == np.uint8
    assert np.abs(dequantise(image, bound) - flow).max() <= bound / 255 + 1e-5
    assert quantise(np.array([-100.0, 0.0, 100.0]), bound).tolist() == [0, 128, 255]  # denseflow's mapping


def test_homography_recovered_from_a_known_camera_motion_within_a_pixel() -> None:
    frames, _ = render(4, blob=False)
    prev, nxt = to_gray(frames[1]), to_gray(frames[3])
    true = camera(3) @ np.linalg.inv(camera(1))
    estimated = estimate_homography(prev, nxt)
    assert estimated is not None
    assert np.abs(_corners(estimated) - _corners(true)).max() < 1.0


def test_homography_refused_when_every_pixel_is_excluded() -> None:
    frames, _ = render(2, blob=False)
    excluded = np.ones((HEIGHT, WIDTH), bool)
    assert estimate_homography(to_gray(frames[0]), to_gray(frames[1]), excluded) is None


@pytest.mark.parametrize("method", FLOW_METHODS)
def test_warp_flow_cancels_pure_camera_motion(method: str) -> None:
    frames, _ = render(2, blob=False)
    a, b = to_gray(frames[0]), to_gray(frames[1])
    plain, warp = FlowComputer(method, warp=False)(a, b), FlowComputer(method)(a, b)
    inner = (slice(8, -8), slice(8, -8))  # OpenCV flows are least sure at the border
    assert _magnitude(plain)[inner].mean() > 1.0  # the camera does move
    assert _magnitude(warp)[inner].mean() < 0.2 * _magnitude(plain)[inner].mean()


def test_motion_map_finds_the_moving_blob_and_nothing_under_pure_camera_motion() -> None:
    frames, masks = render(3)
    flow = FlowComputer("dis")(to_gray(frames[1]), to_gray(frames[2]))
    moving = is_moving(motion_map(flow))
    assert (moving & masks[1]).sum() / (moving | masks[1]).sum() > 0.5
    still, _ = render(2, blob=False)
    assert not is_moving(motion_map(FlowComputer("dis")(to_gray(still[0]), to_gray(still[1])))).any()


def test_motion_map_is_binary_and_drops_small_blobs() -> None:
    flow = np.zeros((48, 64, 2), np.float32)
    flow[10:30, 10:30] = 5.0  # 400 px: kept
    flow[40:43, 50:53] = 5.0  # 9 px: speck
    image = motion_map(flow, MotionRule(min_area=0.01))
    assert set(np.unique(image).tolist()) == {0, MOVING}
    assert is_moving(image)[20, 20] and not is_moving(image)[41, 51]


def test_unknown_flow_method_is_one_config_error() -> None:
    from fpar.errors import ConfigError
    from fpar.prepare.flow import dense_flow
    from fpar.prepare.pipeline import PrepareSettings

    for make in (lambda: dense_flow("lucas"), lambda: PrepareSettings(flow="lucas")):
        with pytest.raises(ConfigError, match="unknown flow method 'lucas'; choose one of dis, tvl1, farneback"):
            make()


def test_compensate_removes_a_pure_camera_motion() -> None:
    frames, _ = render(2, blob=False)
    prev, nxt = to_gray(frames[0]), to_gray(frames[1])
    compensated = FlowComputer.compensate(prev, nxt)
    core = (slice(10, -10), slice(10, -10))
    residual = np.abs(compensated[core].astype(int) - prev[core]).mean()
    assert residual < 0.5 * np.abs(nxt[core].astype(int) - prev[core]).mean()
