"""`read_image`: every failure is a DataError naming the file once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fpar.data.images import read_image
from fpar.errors import DataError


@pytest.mark.parametrize(("content", "reason"), [(b"not an image", "cannot identify image file"),
                                                 (b"", "cannot identify image file"),
                                                 (None, "No such file or directory")])
@pytest.mark.parametrize("as_path", [True, False])
def test_unreadable_image_names_the_path_once(tmp_path: Path, content: bytes | None, reason: str,
                                              as_path: bool) -> None:
    path = tmp_path / "x.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_image(path if as_path else str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: unreadable image (") and reason in message
    assert message.count("x.png") == 1, message


def test_a_16_bit_image_is_scaled_to_8_bits_not_clipped(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 256).astype(np.uint16)[None].repeat(32, 0)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    expected = (ramp >> 8).astype(np.uint8)
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png", gray=True), expected)
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png"), np.dstack([expected] * 3))


@pytest.mark.parametrize("size", [(1, 9), (900, 100)])
def test_an_image_no_frame_could_be_is_refused_before_decoding(tmp_path: Path, size: tuple[int, int]) -> None:
    Image.new("RGB", size).save(tmp_path / "strip.png")
    with pytest.raises(DataError, match=rf"strip\.png: {size[0]}x{size[1]} is not a video frame \(sides over 8:1\)"):
        read_image(tmp_path / "strip.png")
    Image.new("RGB", (800, 100) if size[0] > size[1] else (1, 8)).save(tmp_path / "ok.png")
    assert read_image(tmp_path / "ok.png").ndim == 3  # 8:1 itself is still read
