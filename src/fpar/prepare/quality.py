"""How good a prepared root is, measured against synthetic ground truth (`gt/<video id>.npz`).

Reads what `prepare` wrote (frames, 8-bit flow, motion maps) and the ground truth beside the
labels file; `prepare` itself never reads the ground truth.

* Background residual (px/frame): mean flow magnitude over pixels that move in neither frame of a
  pair (gt `moving` of frames k and k+1), for the written flow and for plain flow computed from the
  same frames with the same method. Both go through the same 8-bit quantisation, so they compare
  like for like. With the camera moving, plain flow's residual is the camera's motion; warp flow
  should leave a small fraction of it (target: at most a third).
* Camera model: mean distance (px) between where the estimated homography of a frame pair and the
  true one put the pixels of the frame; pairs where no homography was found are counted apart.
* Motion maps: IoU of the written maps against gt `moving` of the same frame, pooled over all
  frames (sum of intersections / sum of unions, so frames where little moves weigh little; the mean
  of per-frame IoUs is reported beside it). Target: >= 0.5.

`fpar prepare --evaluate` (and `fpar demo`) write the scores to ``ROOT/quality.json`` (`Quality.save`).

The ground truth is at the video's resolution; it is resized to the frames' size the way frames
are (area interpolation of the 0/1 mask, moving where >= 0.5), so both speak of the same pixels.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fpar.data.images import read_image
from fpar.data.layout import COURSE, QUALITY_NAME, read_manifest
from fpar.data.synthetic import ground_truth_path, load_ground_truth
from fpar.errors import DataError
from fpar.io.atomic import write_atomic
from fpar.prepare.flow import DenseFlow, dense_flow, dequantise, estimate_homography, quantise, to_gray
from fpar.io.labels import Segment, read_labels
from fpar.options import usable_cores
from fpar.prepare.motion_maps import is_moving
from fpar.prepare.settings import PrepareSettings, load_settings

RESIDUAL_TARGET = 1 / 3  # warp residual / plain residual, at most
IOU_TARGET = 0.5


@dataclass
class Quality:
    """Scores of one prepared root (see the module doc); `camera` is the true camera motion."""

    samples: int
    pairs: int
    flow: str
    camera: float  # px/frame, mean displacement the true camera homography causes
    homography_error: float  # px, estimated vs true camera homography, over pairs where one was found
    homography_misses: int  # pairs where no homography was found (warp flow fell back to plain)
    plain_residual: float  # px/frame over the background
    warp_residual: float  # px/frame over the background (the flow as written)
    iou: float  # pooled
    mean_iou: float  # mean of per-frame IoU, frames where something moves or is predicted to
    precision: float
    recall: float

    @property
    def residual_ratio(self) -> float:
        return self.warp_residual / self.plain_residual if self.plain_residual else float("nan")

    @property
    def targets_met(self) -> bool:
        return self.residual_ratio <= RESIDUAL_TARGET and self.iou >= IOU_TARGET

    def lines(self) -> list[str]:
        """Lines for the terminal, each score beside its target."""
        ratio_ok = "ok" if self.residual_ratio <= RESIDUAL_TARGET else "MISSED"
        iou_ok = "ok" if self.iou >= IOU_TARGET else "MISSED"
        return [
            f"{self.samples} samples, {self.pairs} frame pairs, flow {self.flow}; "
            f"true camera motion {self.camera:.2f} px/frame",
            f"camera homography: error {self.homography_error:.3f} px, not found in {self.homography_misses} pairs",
            f"background residual: plain {self.plain_residual:.3f} px/frame, warp {self.warp_residual:.3f} "
            f"px/frame, ratio {self.residual_ratio:.3f} (target <= {RESIDUAL_TARGET:.3f}: {ratio_ok})",
            f"motion maps: IoU {self.iou:.3f} (target >= {IOU_TARGET}: {iou_ok}), mean per-frame IoU "
            f"{self.mean_iou:.3f}, precision {self.precision:.3f}, recall {self.recall:.3f}",
        ]

    def to_dict(self) -> dict:
        return {**asdict(self), "residual_ratio": self.residual_ratio, "targets_met": self.targets_met}

    def save(self, root: Path) -> Path:
        """Write the scores as JSON to ``root/quality.json`` (replacing an earlier one); return its path."""
        path = Path(root) / QUALITY_NAME
        return write_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")


class _Totals:
    """Running sums over all pairs and frames."""

    def __init__(self) -> None:
        self.pairs = self.background = 0
        self.camera = self.plain = self.warp = 0.0
        self.homography_errors: list[float] = []
        self.inter = self.union = self.predicted = self.true = 0
        self.frame_ious: list[float] = []

    def add_pair(self, plain: np.ndarray, warp: np.ndarray, background: np.ndarray, true: np.ndarray,
                 estimated: np.ndarray | None) -> None:
        self.pairs += 1
        points = _grid(background.shape)
        self.camera += _distance(cv2.perspectiveTransform(points, true), points)
        if estimated is not None:
            self.homography_errors.append(_distance(cv2.perspectiveTransform(points, estimated),
                                                    cv2.perspectiveTransform(points, true)))
        self.background += int(background.sum())
        self.plain += float(np.linalg.norm(plain, axis=2)[background].sum())
        self.warp += float(np.linalg.norm(warp, axis=2)[background].sum())

    def merge(self, other: _Totals) -> None:
        """Add `other`'s sums (another sample's) to these."""
        for name in ("pairs", "background", "camera", "plain", "warp", "inter", "union", "predicted", "true"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.homography_errors += other.homography_errors
        self.frame_ious += other.frame_ious

    def add_map(self, predicted: np.ndarray, true: np.ndarray) -> None:
        inter, union = int((predicted & true).sum()), int((predicted | true).sum())
        self.inter, self.union = self.inter + inter, self.union + union
        self.predicted, self.true = self.predicted + int(predicted.sum()), self.true + int(true.sum())
        if union:
            self.frame_ious.append(inter / union)


def evaluate(labels: Path, root: Path, videos: Path | None = None, progress: bool = False,
             workers: int | None = None) -> Quality:
    """Score every ok sample of `root` listed in `labels`, whose gt lies beside `labels`; `progress`
    shows a progress bar (samples). Samples are scored in `workers` processes (None: one per usable core;
    the scoring recomputes plain flow and homographies, as costly as preparing); sums are merged in
    sample order, so the scores do not depend on the count beyond float rounding."""
    settings = load_settings(root)
    if settings is None:
        raise DataError(f"{root}: not prepared by `fpar prepare` (no settings file)")
    manifest = read_manifest(root)
    done = [s for s in read_labels(labels, videos) if manifest.get(s.key, {}).get("status") == "ok"]
    if not done:
        raise DataError(f"{root}: no prepared samples of {labels} to evaluate")
    jobs = []
    for segment in done:
        gt = ground_truth_path(Path(labels).parent, segment.source)
        if not gt.is_file():
            raise DataError(f"{gt}: no ground truth for {segment.source}; evaluation needs data made by `fpar synth`")
        jobs.append((Path(root), segment, int(manifest[segment.key]["frames"]), settings, gt))
    workers = min(usable_cores() if workers is None else workers, len(jobs))
    totals = _Totals()
    with ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=get_context("spawn"),
                                                           initializer=cv2.setNumThreads, initargs=(1,)))
            scored = pool.map(_sample_totals, jobs, chunksize=max(1, len(jobs) // (4 * workers)))
        else:
            scored = map(_sample_totals, jobs)
        for sample in tqdm(scored, total=len(jobs), unit="sample", desc="evaluate", disable=not progress):
            totals.merge(sample)
    return Quality(
        samples=len(done), pairs=totals.pairs, flow=settings.flow,
        camera=totals.camera / max(totals.pairs, 1),
        homography_error=float(np.mean(totals.homography_errors)) if totals.homography_errors else float("nan"),
        homography_misses=totals.pairs - len(totals.homography_errors),
        plain_residual=totals.plain / max(totals.background, 1),
        warp_residual=totals.warp / max(totals.background, 1),
        iou=totals.inter / max(totals.union, 1),
        mean_iou=float(np.mean(totals.frame_ious)) if totals.frame_ious else 1.0,
        precision=totals.inter / max(totals.predicted, 1), recall=totals.inter / max(totals.true, 1))


def _sample_totals(job: tuple[Path, Segment, int, PrepareSettings, Path]) -> _Totals:
    """One sample's sums (in a worker process, or this one)."""
    root, segment, frames, settings, gt = job
    moving, camera = load_ground_truth(gt)
    totals = _Totals()
    _score_sample(root, segment, frames, settings, _dense_flow(settings.flow), moving[segment.start:],
                  camera[segment.start:], totals)
    return totals


@lru_cache(maxsize=None)
def _dense_flow(method: str) -> DenseFlow:
    """One flow object per method and process (built once: DIS is fastest reused)."""
    return dense_flow(method)


def _score_sample(root: Path, segment: Segment, frames: int, settings: PrepareSettings, flow: DenseFlow,
                  moving: np.ndarray, camera: np.ndarray, totals: _Totals) -> None:
    key = segment.key
    grays = [to_gray(read_image(COURSE.path(root, "rgb", *key, p))) for p in range(frames)]
    shape = grays[0].shape
    true = [_resize_mask(m, shape) for m in moving[:frames]]
    scale = np.diag([shape[1] / moving.shape[2], shape[0] / moving.shape[1], 1.0])
    for p in range(frames - 1):
        plain = dequantise(quantise(flow(grays[p], grays[p + 1]), settings.bound), settings.bound)
        warp = np.dstack([dequantise(read_image(COURSE.path(root, f"flow_{axis}", *key, p), gray=True),
                                     settings.bound) for axis in "xy"])
        step = scale @ camera[p + 1] @ np.linalg.inv(camera[p]) @ np.linalg.inv(scale)
        totals.add_pair(plain, warp, ~(true[p] | true[p + 1]), step, estimate_homography(grays[p], grays[p + 1]))
    for p in range(frames):
        totals.add_map(is_moving(read_image(COURSE.path(root, "mmaps", *key, p), gray=True)), true[p])


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == shape:
        return mask
    return cv2.resize(mask.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA) >= 0.5


def _grid(shape: tuple[int, int]) -> np.ndarray:
    """16 x 16 points spread over a frame, shaped for cv2.perspectiveTransform."""
    ys, xs = np.meshgrid(np.linspace(0, shape[0] - 1, 16), np.linspace(0, shape[1] - 1, 16), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1).reshape(-1, 1, 2)


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b, axis=2).mean())
