"""Fixtures of the data tests: tiny fake roots in both layouts (see `fake_layout`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fake_layout import DEFAULT_INSTANCES, FakeInstance, write_root

from fpar.data.layout import LAYOUTS


@pytest.fixture
def make_root(tmp_path: Path) -> Callable[..., Path]:
    """Call as make_root("course" | "egornn", instances=..., size=...) to get a fresh root."""
    count = iter(range(1_000))

    def make(layout: str = "course", instances: tuple[FakeInstance, ...] = DEFAULT_INSTANCES,
             size: tuple[int, int] = (32, 24)) -> Path:
        return write_root(tmp_path / f"root{next(count)}", LAYOUTS[layout], instances, size)

    return make
