"""Fixtures of the evaluation tests: one tiny prepared root per session, one thread for torch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def prepared_root(synth_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`synth_raw` prepared at 64x48: 4 users x 4 classes (take_cup, put_cup, take_box, shake_box) x 2 clips."""
    from fpar.prepare.pipeline import PrepareSettings, prepare

    root = tmp_path_factory.mktemp("eval_prepared")
    report = prepare(synth_raw / "labels.csv", root, PrepareSettings(size=(64, 48)), workers=1, progress=False)
    assert not report.failed
    return root


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread, as in tests/models (two threads on this shared 2-core machine crawl)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
