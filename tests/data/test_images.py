"""`read_image`: every failure is a DataError naming the file once."""

from __future__ import annotations

from pathlib import Path

import pytest

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
