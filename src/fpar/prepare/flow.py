"""Camera-compensated ("warp") optical flow and denseflow-style 8-bit quantisation.

Warp flow follows IDT (Wang & Schmid 2013): the camera's motion between two frames is modelled
as a homography, estimated from tracked background features with RANSAC; the second frame is
warped back onto the first by it, and dense flow between the first frame and the warped second
one leaves only what the camera does not explain (hands, objects). IDT also masks people with a
detector; fpar has none, so RANSAC's outlier rejection does that job, helped by an optional
user-supplied mask of regions to keep out of the feature matching (e.g. hand masks).

Flow images are quantised as denseflow does: clip to [-bound, bound], map linearly to 0..255
(``round(255 * (v + bound) / (2 * bound))``), one 8-bit grayscale image per axis.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Callable

import cv2
import numpy as np

from fpar.options import DEFAULT_BOUND, DEFAULT_FLOW, FLOW_METHODS, check_flow_method  # noqa: F401 (re-exported)

# Feature tracking for the homography. Corners + pyramidal Lucas-Kanade give sub-pixel matches
# (ORB keypoints sit on a pixel grid per pyramid level, which costs accuracy); a forward-backward
# check drops tracks that drifted, and RANSAC drops what moves on its own.
_MAX_CORNERS = 150  # 300 cost 2.2 ms/frame more and did not help (docs/prepare.md, "Warp flow")
_MIN_MATCHES = 12  # fewer inliers than this: no trustworthy camera model, treat as static camera
_FB_TOLERANCE = 1.0  # px, forward-backward tracking disagreement allowed
_RANSAC_THRESHOLD = 1.0  # px, reprojection error of an inlier
_LK = dict(winSize=(15, 15), maxLevel=3,
           criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))

DenseFlow = Callable[[np.ndarray, np.ndarray], np.ndarray]


def dense_flow(method: str) -> DenseFlow:
    """A dense flow function ``(prev_gray, next_gray) -> (H, W, 2) float32`` for `method`.

    DIS (preset medium) is the default because it is about 100x faster than TV-L1 on a CPU;
    TV-L1 at OpenCV's CPU defaults is close to denseflow's (its CUDA TV-L1 runs more iterations and no
    median filter); Farneback sits between them.
    The OpenCV object is built once and reused, which matters for DIS's speed.
    An unknown `method` raises ConfigError.
    """
    check_flow_method(method)
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return lambda a, b: dis.calc(a, b, None)
    if method == "tvl1":
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        return lambda a, b: tvl1.calc(a, b, None)
    return lambda a, b: cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def estimate_homography(prev_gray: np.ndarray, next_gray: np.ndarray,
                        exclude: np.ndarray | None = None) -> np.ndarray | None:
    """The homography H with ``next(H p) ~ prev(p)`` (the camera's motion), or None if unsure.

    `exclude` (bool, frame-sized) marks pixels whose features must not be used (e.g. hands).
    """
    h, w = prev_gray.shape
    keep = None if exclude is None else np.where(exclude, 0, 255).astype(np.uint8)
    corners = cv2.goodFeaturesToTrack(prev_gray, _MAX_CORNERS, 0.01, max(3, min(h, w) // 40),
                                      mask=keep, blockSize=3)
    if corners is None or len(corners) < _MIN_MATCHES:
        return None
    tracked, ok, _ = cv2.calcOpticalFlowPyrLK(prev_gray, next_gray, corners, None, **_LK)
    back, ok_back, _ = cv2.calcOpticalFlowPyrLK(next_gray, prev_gray, tracked, None, **_LK)
    good = (ok[:, 0] == 1) & (ok_back[:, 0] == 1) & \
        (np.linalg.norm((back - corners)[:, 0], axis=1) < _FB_TOLERANCE)
    if good.sum() < _MIN_MATCHES:
        return None
    homography, inliers = cv2.findHomography(corners[good], tracked[good], cv2.RANSAC, _RANSAC_THRESHOLD)
    if homography is None or inliers is None or inliers.sum() < _MIN_MATCHES:
        return None
    return homography


def warp_back(prev_gray: np.ndarray, next_gray: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """`next_gray` warped onto `prev_gray`'s pixel grid by the camera homography.

    Pixels the warp brings in from outside the frame copy `prev_gray`, so they read as "no motion"
    instead of a border artefact that would show up as motion.
    """
    h, w = prev_gray.shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(next_gray, homography, (w, h), flags=flags, borderValue=0)
    inside = cv2.warpPerspective(np.full((h, w), 255, np.uint8), homography, (w, h), flags=flags,
                                 borderValue=0)
    return np.where(inside == 255, warped, prev_gray)


class FlowComputer:
    """Flow between consecutive frames: warp flow (camera removed) or plain flow."""

    def __init__(self, method: str = DEFAULT_FLOW, warp: bool = True) -> None:
        self.flow = dense_flow(method)
        self.warp = warp

    @staticmethod
    def compensate(prev_gray: np.ndarray, next_gray: np.ndarray,
                   exclude: np.ndarray | None = None) -> np.ndarray:
        """`next_gray` with the camera's motion since `prev_gray` removed (warped back by the
        estimated homography), or `next_gray` itself when no trustworthy homography is found."""
        homography = estimate_homography(prev_gray, next_gray, exclude)
        return next_gray if homography is None else warp_back(prev_gray, next_gray, homography)

    def __call__(self, prev_gray: np.ndarray, next_gray: np.ndarray,
                 exclude: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 2) float32 flow from `prev_gray` to `next_gray`, pixels/frame."""
        if self.warp:
            next_gray = self.compensate(prev_gray, next_gray, exclude)
        return self.flow(prev_gray, next_gray)


def quantise(flow: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """Flow (any shape, px/frame) to uint8 as denseflow does: clip to [-bound, bound], 0..255."""
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2 * bound))
    return np.rint(scaled).astype(np.uint8)


def dequantise(image: np.ndarray, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """uint8 flow image back to px/frame (float32); the error is at most bound / 255."""
    return (image.astype(np.float32) * (2 * bound / 255.0) - bound).astype(np.float32)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def flow_images(flow: np.ndarray, bound: float = DEFAULT_BOUND) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) uint8 images of one (H, W, 2) flow, as `fpar prepare` writes them."""
    q = quantise(flow, bound)
    return q[..., 0], q[..., 1]


def warp_flow_images(frames_rgb: Iterable[np.ndarray], method: str = DEFAULT_FLOW, warp: bool = True,
                     bound: float = DEFAULT_BOUND,
                     exclude: Sequence[np.ndarray | None] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The (x, y) uint8 flow images `fpar prepare` writes for these consecutive RGB frames, one
    pair at a time (frames are read as they come, so a long video need not fit in memory): pair k
    goes from frame k to k+1. Pass frames at the prepared size (`fpar.io.video.decode(path, size)`)
    and the root's settings (`PrepareSettings.flow/warp/bound`) to get its flow files' pixels;
    `exclude[k]` is frame k's hand mask (bool), if any. `fpar cam` makes its flow here."""
    computer = FlowComputer(method, warp)
    previous: np.ndarray | None = None
    for k, frame in enumerate(frames_rgb):
        gray = to_gray(frame)
        if previous is not None:
            yield flow_images(computer(previous, gray, None if exclude is None else exclude[k - 1]), bound)
        previous = gray
