"""The one image reader: a frame, flow or motion-map file (or a hand mask) -> uint8 numpy array.

Without torch, so `fpar data check` and `fpar prepare` stay light; `datasets.read_image` wraps it
into the (C, H, W) tensors models read. PIL decodes, because PIL's gray conversion is the one the
reference uses for flow images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fpar.errors import DataError
from fpar.io.limits import MAX_PIXELS

FORMATS = ("PNG", "JPEG", "BMP", "WEBP")  # what fpar's data, hand masks and CAM inputs are; PIL would
# otherwise hand any format it knows to its plugin, EPS to Ghostscript among them
MAX_ASPECT = 8  # long side / short side; video frames are 4:3 to 2:1, and resizing the short side to
# 256 would make a 1 x 60000 image (few pixels, so under PIL's bomb limit) an 11 GiB tensor
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def read_image(path: str | Path, gray: bool = False) -> np.ndarray:
    """Decode an image file to uint8 (H, W, 3) RGB, or (H, W) grayscale with `gray`.

    Images are untrusted input: any failure (missing, empty, truncated, not an image, a format
    other than `FORMATS`, more than `MAX_PIXELS` pixels, an aspect ratio no frame has, or whatever
    else a decoder plugin raises on crafted bytes: EOFError, struct.error, ...) becomes a DataError
    naming the file. The size is checked from the header, before anything is decoded.
    """
    try:
        with Image.open(path, formats=FORMATS) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise DataError(f"{path}: {width}x{height} is over the limit of {MAX_PIXELS / 1e6:g} megapixels")
            if max(width, height) > MAX_ASPECT * min(width, height):
                raise DataError(f"{path}: {width}x{height} is not a video frame (sides over {MAX_ASPECT}:1)")
            return np.array(_eight_bit(image).convert("L" if gray else "RGB"))
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoders of untrusted bytes fail in open-ended ways
        reason = _without_path(str(exc), path)
        if isinstance(exc, UnidentifiedImageError):
            reason += f"; fpar reads {', '.join(FORMATS)}"
        raise DataError(f"{path}: unreadable image ({reason})" if reason else f"{path}: unreadable image") from exc


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit grayscale image scaled to 8 bits (its high byte).

    PIL's own conversion of 16-bit gray to "L" or "RGB" clips every value over 255 to white.
    """
    if image.mode not in SIXTEEN_BIT_MODES:
        return image
    values = np.asarray(image)
    if values.min() < 0 or values.max() > 0xFFFF:
        raise DataError(f"{image.filename}: {image.mode} image with values outside 0..65535; save it with 8 or 16 bits")
    return Image.fromarray((values.astype(np.uint32) >> 8).astype(np.uint8), mode="L")


def _without_path(reason: str, path: str | Path) -> str:
    """`reason` without the copy of `path` PIL or the OS put in it (the message starts with it):
    "cannot identify image file 'x.png'" -> "cannot identify image file"."""
    text = str(path)
    for form in (repr(text), repr(Path(text)), text):
        reason = reason.replace(form, "")
    return " ".join(reason.split()).strip(" :,")
