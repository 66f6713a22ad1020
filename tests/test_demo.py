"""`fpar demo --tiny` end to end, as a user runs it: every step's output exists and is consistent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fpar.data.layout import (DEMO_CONTACT_SHEET_NAME, DEMO_PREPARED_DIR, DEMO_SYNTH_DIR, LABELS_NAME, MANIFEST_NAME,
                              PREPARE_SETTINGS_NAME, QUALITY_NAME, discover)
from fpar.data.synthetic import TINY_CLASSES
from fpar.prepare.quality import IOU_TARGET, RESIDUAL_TARGET

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("demo")
    # A wide terminal, so rich does not shorten the paths the output is checked for.
    result = subprocess.run([sys.executable, "-m", "fpar.cli", "demo", "--tiny", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "400"})
    return out, result


def test_demo_runs_and_writes_every_step(demo_out) -> None:
    out, result = demo_out
    assert result.returncode == 0, result.stdout + result.stderr
    labels = (out / DEMO_SYNTH_DIR / LABELS_NAME).read_text().splitlines()
    assert labels[0] == "video,user,label"
    n_videos = len(labels) - 1
    with Image.open(out / DEMO_CONTACT_SHEET_NAME) as sheet:
        assert sheet.width > 200 and sheet.height > 200

    found = discover(out / DEMO_PREPARED_DIR)
    assert found.layout.name == "course" and not found.problems
    assert len(found.samples) == n_videos
    assert {s.label for s in found.samples} == set(TINY_CLASSES)
    for sample in found.samples:
        assert sample.n_flows == sample.n_frames - 1
        assert len(sample.mmaps) == sample.n_frames


def test_demo_reports_measured_quality(demo_out) -> None:
    out, result = demo_out
    quality = json.loads((out / DEMO_PREPARED_DIR / QUALITY_NAME).read_text())  # as `fpar prepare --evaluate` writes
    assert quality["targets_met"] == (quality["residual_ratio"] <= RESIDUAL_TARGET and quality["iou"] >= IOU_TARGET)
    assert str(out / DEMO_PREPARED_DIR / QUALITY_NAME) in " ".join(result.stdout.split())  # the table says where
    # the finished root holds what it should and nothing else: no lock, journal, work folder or temp file
    assert {p.name for p in (out / DEMO_PREPARED_DIR).iterdir()} == {
        "processed_frames2", "flow_x_processed", "flow_y_processed", MANIFEST_NAME, PREPARE_SETTINGS_NAME, QUALITY_NAME}
    # warp flow must cancel most of the camera's motion on the background
    assert 0 <= quality["warp_residual"] < quality["plain_residual"]
    assert 0 < quality["iou"] <= 1
    assert "background residual" in result.stdout


def test_demo_rerun_resumes_without_redoing(demo_out) -> None:
    out, _ = demo_out
    again = subprocess.run([sys.executable, "-m", "fpar.cli", "demo", "--tiny", "--out", str(out)],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 prepared" in again.stdout and "already complete" in again.stdout


def test_demo_runs_every_model_on_prepared_data(demo_out) -> None:
    """Step 4 feeds each model a batch of its own dataset: at 112 px, layer4 is 4x4 and T is 7."""
    _, result = demo_out
    assert "2x7x2x4x4" in result.stdout  # MS logits: B x T x 2 x s x s
    assert "2x10x112x112" in result.stdout  # a flow stack of L=5 x/y pairs
