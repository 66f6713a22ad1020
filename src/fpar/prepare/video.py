"""Decode videos with PyAV (the one decoder: `synthetic.read_video` uses it too), resize frames, write
frame images (`fpar.data.images` reads them)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from fpar.errors import DataError
from fpar.options import Size


def resize(image: np.ndarray, size: Size | None) -> np.ndarray:
    """Resize to exactly `size` (width, height) with area interpolation (right for shrinking, which
    is the usual case: raw head-camera video is larger than the frames models read)."""
    if size is None or (image.shape[1], image.shape[0]) == size:
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def decode(path: Path, size: Size | None, first: int = 0,
           last: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame index from 0, RGB uint8 frame resized to `size`) for frames first..last.

    Frames before `first` are decoded but not converted, and decoding stops after `last`.
    A missing or empty file, or one PyAV cannot open or decode, raises DataError with the reason.
    """
    if not Path(path).is_file():
        raise DataError(f"{path}: video not found")
    if Path(path).stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index >= first:
                    yield index, resize(frame.to_ndarray(format="rgb24"), size)
                if last is not None and index >= last:
                    return
    except av.FFmpegError as exc:
        raise DataError(f"{path}: cannot decode video: {exc.strerror or exc}") from exc


def write_image(path: Path, image: np.ndarray) -> None:
    """Write an RGB or grayscale uint8 image (format from the suffix)."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image):
        raise DataError(f"{path}: could not write image")
