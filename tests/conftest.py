"""Fixtures shared by all tests: small synthetic data made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic raw set (`SynthConfig.tiny()`, seed 0): videos/, gt/, labels.csv.

    4 users x 4 classes x 2 clips of 16 frames at 128x96; about a second to make.
    """
    from fpar.data.synthetic import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("synth_raw")
    synthesize(out, SynthConfig.tiny(), progress=False, workers=1)
    return out
