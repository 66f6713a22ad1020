"""Video and frame-image I/O with PyAV and OpenCV: the one decoder, the one H.264 writer.

It sits below `data` and `prepare` (both use it: synthetic data writes videos, `prepare` decodes them,
CAM writes its overlays), so neither of those packages imports the other for media.
`fpar.data.images` reads the frame images written here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from fpar.errors import DataError
from fpar.io.atomic import free_space
from fpar.io.limits import MAX_PIXELS
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
    The RGB conversion runs on one thread: with FFmpeg's default (a thread per core) every frame
    started threads of its own, which cost 0.4 ms a frame at 320x240 (0.93 -> 0.56 ms, same
    pixels) and, in `prepare`'s worker processes, system time in thread start-ups and futexes.
    A missing or empty file, one PyAV cannot open or decode, or frames over `MAX_PIXELS` (checked
    on the stream's header and on each frame before its conversion) raise DataError with the reason.
    """
    if not Path(path).is_file():
        raise DataError(f"{path}: video not found")
    if Path(path).stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    try:
        with av.open(str(path), metadata_errors="replace") as container:  # tags are untrusted text
            if not container.streams.video:
                raise DataError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            _check_pixels(path, stream.codec_context.width, stream.codec_context.height)
            for index, frame in enumerate(container.decode(stream)):
                _check_pixels(path, frame.width, frame.height)  # a stream may change size midway
                if index >= first:
                    yield index, resize(frame.to_ndarray(format="rgb24", threads=1), size)
                if last is not None and index >= last:
                    return
    except av.FFmpegError as exc:
        raise DataError(f"{path}: cannot decode video: {exc.strerror or exc}") from exc


def _check_pixels(path: Path, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise DataError(f"{path}: {width}x{height} frames are over the limit of {MAX_PIXELS / 1e6:g} megapixels")


def write_image(path: Path, image: np.ndarray) -> None:
    """Write an RGB or grayscale uint8 image (format from the suffix)."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image):
        raise DataError(f"{path}: could not write image {free_space(path.parent)}")


def write_video(path: Path, frames: np.ndarray | Iterable[np.ndarray], fps: float, crf: int = 20,
                threads: int = 1) -> None:
    """(T, H, W, 3) uint8 RGB frames -> H.264 mp4 (yuv420p, plays in browsers), CRF 20 by default.

    One encoder thread by default: callers run videos in parallel, and the bytes never depend on timing.
    Odd sizes are padded by one pixel (yuv420p needs even sides).
    """
    with av.open(str(path), mode="w") as container:
        stream = None
        for image in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height = image.shape[1] + image.shape[1] % 2, image.shape[0] + image.shape[0] % 2
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": "superfast", "threads": str(threads)}
            if image.shape[:2] != (stream.height, stream.width):
                image = np.pad(image, ((0, stream.height - image.shape[0]), (0, stream.width - image.shape[1]), (0, 0)),
                               mode="edge")
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        if stream is None:
            raise DataError(f"{path}: no frames to write")
        container.mux(stream.encode())


def read_video(path: str | Path, size: Size | None = None) -> np.ndarray:
    """All frames of a video as (T, H, W, 3) uint8 RGB; DataError naming the file if unreadable or empty."""
    frames = [frame for _, frame in decode(Path(path), size)]
    if not frames:
        raise DataError(f"{path}: no frames")
    return np.stack(frames)
