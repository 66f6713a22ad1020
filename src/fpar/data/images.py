"""The one image reader: a frame, flow or motion-map file (or a hand mask) -> uint8 numpy array.

Without torch, so `fpar data check` and `fpar prepare` stay light; `datasets.read_image` wraps it
into the (C, H, W) tensors models read. PIL decodes, because PIL's gray conversion is the one the
reference uses for flow images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fpar.errors import DataError


def read_image(path: str | Path, gray: bool = False) -> np.ndarray:
    """Decode an image file to uint8 (H, W, 3) RGB, or (H, W) grayscale with `gray`.

    Images are untrusted input: any failure (missing, empty, truncated, not an image, a
    decompression bomb, or whatever else a decoder plugin raises on crafted bytes: EOFError,
    struct.error, ...) becomes a DataError naming the file.
    """
    try:
        with Image.open(path) as image:
            return np.array(image.convert("L" if gray else "RGB"))
    except Exception as exc:  # noqa: BLE001 - decoders of untrusted bytes fail in open-ended ways
        reason = _without_path(str(exc), path)
        raise DataError(f"{path}: unreadable image ({reason})" if reason else f"{path}: unreadable image") from exc


def _without_path(reason: str, path: str | Path) -> str:
    """`reason` without the copy of `path` PIL or the OS put in it (the message starts with it):
    "cannot identify image file 'x.png'" -> "cannot identify image file"."""
    text = str(path)
    for form in (repr(text), repr(Path(text)), text):
        reason = reason.replace(form, "")
    return " ".join(reason.split()).strip(" :,")
