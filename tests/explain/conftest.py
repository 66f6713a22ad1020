"""Fixtures of the CAM tests: a fixed seed (one torch thread and the `video` come from tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)
