"""Fixtures of the training tests: one tiny prepared root per session, one thread, recipe writer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Small everywhere: N=3 frames at 48x48 (layer4 2x2), an 8-channel ConvLSTM, batches of 4.
TINY = ["data.frames=3", "data.flow_stack=2", "data.image_size=48", "data.batch_size=4", "data.workers=0",
        "model.mem_size=8"]


@pytest.fixture(scope="session")
def prepared_root(synth_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`synth_raw` prepared at 64x48: 4 users x 4 classes x 2 clips, frames, warp flow, motion maps."""
    from fpar.prepare.pipeline import PrepareSettings, prepare

    root = tmp_path_factory.mktemp("prepared")
    report = prepare(synth_raw / "labels.csv", root, PrepareSettings(size=(64, 48)), workers=1, progress=False)
    assert not report.failed
    return root


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread, as in tests/models (two waiting OpenMP threads are far slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def stage_yaml(name: str, trains: list[str], epochs: int = 1, extra: str = "") -> str:
    """One stage of a recipe as YAML list item text."""
    return f"  - name: {name}\n    trains: [{', '.join(trains)}]\n    epochs: {epochs}\n{extra}"


def write_recipe(folder: Path, model: str, stages: list[str], name: str = "recipe.yaml") -> Path:
    """A recipe file for `model` with the given stage texts (data.root comes as an override)."""
    path = folder / name
    path.write_text(f"model:\n  name: {model}\nstages:\n{''.join(stages)}")
    return path
