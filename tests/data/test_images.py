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


def test_formats_other_than_fpars_are_not_handed_to_their_decoders(tmp_path: Path) -> None:
    # PIL would open any format it knows under any name (an EPS named .png goes to Ghostscript);
    # a GIF stands in for them, since it decodes without outside programs
    Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / "x.png", format="GIF")
    with pytest.raises(DataError, match=r"x\.png: unreadable image \(cannot identify image file; "
                                        r"fpar reads PNG, JPEG, BMP, WEBP\)"):
        read_image(tmp_path / "x.png")
    Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / "y.png", format="JPEG")
    assert read_image(tmp_path / "y.png").shape == (8, 8, 3)  # a JPEG named .png is still a frame


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height and that holds no pixels at all."""
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray
    chunk = b"IHDR" + header
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk
                     + struct.pack(">I", zlib.crc32(chunk)) + b"\x00\x00\x00\x00IEND\xaeB`\x82")


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path: Path) -> None:
    # under PIL's own bomb error (89 Mpx warns, 179 Mpx raises) but 1.6 GB to decode at 144 Mpx
    _png_header_only(tmp_path / "bomb.png", 8000, 6000)
    with pytest.raises(DataError, match=r"bomb\.png: 8000x6000 is over the limit of 40 megapixels"):
        read_image(tmp_path / "bomb.png")
    _png_header_only(tmp_path / "fits.png", 6000, 6000)  # 36 Mpx passes the check and fails later
    with pytest.raises(DataError, match=r"fits\.png: unreadable image"):
        read_image(tmp_path / "fits.png")
