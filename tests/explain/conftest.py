"""Fixtures of the CAM tests: one torch thread, a fixed seed, a tiny synthetic video."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fpar.io.labels import read_labels


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread (the convention of tests/models: 2 shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def video(synth_raw: Path) -> Path:
    """A synthetic egocentric video: 16 frames of 128x96, H.264."""
    return next(iter(read_labels(synth_raw / "labels.csv"))).video
