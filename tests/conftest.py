"""Fixtures shared by all tests: small synthetic data made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _frame_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory):
    """Datasets cache decoded frames under $FPAR_CACHE_DIR (`fpar.data.frame_cache`): tests keep
    theirs in a session folder, never in the user's ~/.cache."""
    import os

    from fpar.data.frame_cache import ENV_CACHE_DIR

    before = os.environ.get(ENV_CACHE_DIR)
    os.environ[ENV_CACHE_DIR] = str(tmp_path_factory.mktemp("fpar_cache"))
    yield
    if before is None:
        os.environ.pop(ENV_CACHE_DIR, None)
    else:
        os.environ[ENV_CACHE_DIR] = before


@pytest.fixture(scope="session")
def synth_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic raw set (`SynthConfig.tiny()`, seed 0): videos/, gt/, labels.csv.

    4 users x 4 classes x 2 clips of 16 frames at 128x96; about a second to make.
    """
    from fpar.data.synthetic import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("synth_raw")
    synthesize(out, SynthConfig.tiny(), progress=False, workers=1)
    return out


@pytest.fixture(scope="session")
def prepared_root(synth_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`synth_raw` prepared at 64x48: 4 users x 4 classes (take_cup, put_cup, take_box, shake_box) x 2 clips,
    frames, warp flow, motion maps; made once per session for every test folder that trains or evaluates."""
    from fpar.prepare.pipeline import PrepareSettings, prepare

    root = tmp_path_factory.mktemp("prepared")
    report = prepare(synth_raw / "labels.csv", root, PrepareSettings(size=(64, 48)), workers=1, progress=False)
    assert not report.failed
    return root


@pytest.fixture(scope="session")
def video(synth_raw: Path) -> Path:
    """A synthetic egocentric video: 16 frames of 128x96, H.264."""
    from fpar.io.labels import read_labels

    return next(iter(read_labels(synth_raw / "labels.csv"))).video


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op torch thread in every test: on a shared 2-core machine, two OpenMP threads that
    wait for each other at every barrier ran ResNet-34 60x slower than one (measured in tests/models)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
