"""One sample's files: streamed frame by frame into the run's work folder, renamed into place whole."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from fpar.data.images import read_image
from fpar.data.layout import COURSE, HAND_MASK_PATTERN, MAP_THRESHOLD
from fpar.errors import DataError
from fpar.io.labels import Segment
from fpar.io.video import write_image
from fpar.prepare.flow import FlowComputer, flow_images, to_gray
from fpar.prepare.manifest import SampleResult
from fpar.prepare.motion_maps import motion_map
from fpar.prepare.settings import PrepareSettings

MIN_FRAMES = 2  # one flow needs two frames


class HandMasks:
    """Optional per-frame masks of regions to keep out of the camera estimate (e.g. hands).

    Layout (`HAND_MASK_PATTERN`): ``<folder>/<video stem>/<frame index>.png``, the frame index
    counted from 0 like `start`/`end` in the labels file (``0003.png`` or ``3.png``); white
    (> `MAP_THRESHOLD`) = exclude. Frames without a mask use all pixels. Any other ``.png`` in the
    folder is an error: a name like ``mask_v2_0003.png`` would otherwise be silently ignored (or,
    counting every digit, read as frame 20003).
    """

    def __init__(self, folder: Path | None, video: Path) -> None:
        self.files: dict[int, Path] = {}
        for path in sorted((folder / video.stem).glob("*.png")) if folder else []:
            match = HAND_MASK_PATTERN.fullmatch(path.name)
            if match is None:
                raise DataError(f"{path}: hand masks must be named <frame index>.png (e.g. 0003.png for frame 3, "
                                f"counted from 0)")
            if int(match[1]) in self.files:
                raise DataError(f"{path}: a second mask of frame {int(match[1])} ({self.files[int(match[1])].name})")
            self.files[int(match[1])] = path

    def get(self, index: int, shape: tuple[int, int]) -> np.ndarray | None:
        if index not in self.files:
            return None
        mask = read_image(self.files[index], gray=True)
        return cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > MAP_THRESHOLD


class SampleWriter:
    """Streams one segment's frames into `work` (the run's own folder, in the course layout):
    frame, flow and motion map by position; `finish` renames its folders into `root`."""

    def __init__(self, root: Path, work: Path, segment: Segment, settings: PrepareSettings, flow: FlowComputer,
                 masks: HandMasks) -> None:
        self.root, self.work, self.segment, self.settings = root, work, segment, settings
        self.flow, self.masks = flow, masks
        for folder in [*COURSE.sample_roots(work, *segment.key), *COURSE.sample_roots(root, *segment.key)]:
            shutil.rmtree(folder, ignore_errors=True)  # an earlier try, or an interrupted run's half
        for modality in COURSE.modalities:
            COURSE.instance_dir(work, modality, *segment.key).mkdir(parents=True)
        self.frames = 0
        self.previous: np.ndarray | None = None
        self.last_map: np.ndarray | None = None

    def wants(self, index: int) -> bool:
        end = self.segment.end
        return self.segment.start <= index and (end is None or index <= end)

    def push(self, index: int, rgb: np.ndarray) -> None:
        """Add frame `index` of the video: write it, and the flow and map from the frame before."""
        write_image(self._path("rgb", self.frames), rgb)
        gray = to_gray(rgb)
        if self.previous is not None:
            flow = self.flow(self.previous, gray, self.masks.get(index - 1, gray.shape))
            position = self.frames - 1
            for axis, image in zip(("flow_x", "flow_y"), flow_images(flow, self.settings.bound)):
                write_image(self._path(axis, position), image)
            self.last_map = motion_map(flow, self.settings.motion)
            write_image(self._path("mmaps", position), self.last_map)
        self.previous = gray
        self.frames += 1

    def finish(self) -> SampleResult:
        """Move the complete sample into place; DataError if it is too short."""
        if self.frames < MIN_FRAMES:
            raise DataError(f"too short: {self.frames} frame(s), need at least {MIN_FRAMES}")
        write_image(self._path("mmaps", self.frames - 1), self.last_map)  # last frame repeats map n-2
        for work, final in zip(COURSE.sample_roots(self.work, *self.segment.key),
                               COURSE.sample_roots(self.root, *self.segment.key)):
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(work, final)
        return SampleResult(self.segment, self.frames, self.frames - 1)

    def fail(self, reason: str) -> SampleResult:
        for folder in COURSE.sample_roots(self.work, *self.segment.key):
            shutil.rmtree(folder, ignore_errors=True)
        return SampleResult(self.segment, 0, 0, reason)

    def _path(self, modality: str, position: int) -> Path:
        return COURSE.path(self.work, modality, *self.segment.key, position)
