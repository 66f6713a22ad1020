"""`fpar train --resume` after kill -9 ends bit-identical to a run that was never interrupted."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY, stage_yaml, write_recipe
from fpar.models import read_checkpoint
from fpar.train.rundir import RunDir

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src"), "OMP_NUM_THREADS": "1"}


def fpar(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fpar.cli", "train", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def epochs_done(run: RunDir) -> int:
    if not run.metrics.is_file():
        return 0
    with run.metrics.open() as handle:
        return len(list(csv.DictReader(handle)))


def committed(run: RunDir, epochs: int) -> bool:
    """`epochs` epochs done and the last one's state.pt written (it comes after metrics.csv)."""
    return (epochs_done(run) >= epochs and run.state.is_file()
            and run.state.stat().st_mtime_ns >= run.metrics.stat().st_mtime_ns)


def without_seconds(run: RunDir) -> list[dict[str, str]]:
    with run.metrics.open() as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_killed_run_resumes_bit_exactly(prepared_root: Path, tmp_path: Path) -> None:
    # dropout, random crops and shuffling all matter; s2 trains backbone convs with momentum (SGD)
    recipe = write_recipe(tmp_path, "rgb", [
        stage_yaml("s1", ["lstm", "classifier"], 2),
        stage_yaml("s2", ["lstm", "classifier", "layer4_convs"], 3, "    optimizer: sgd\n    lr: 1.0e-2\n"
                   "    milestones: [1]\n")])
    args = [str(recipe), f"data.root={prepared_root}", *TINY, "data.workers=1"]
    whole, killed = RunDir(tmp_path / "whole"), RunDir(tmp_path / "killed")
    assert fpar(*args, "--out", str(whole.root)).wait() == 0

    process = fpar(*args, "--out", str(killed.root))
    while process.poll() is None and not committed(killed, 3):  # then kill in s2's second epoch
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert epochs_done(killed) == 3  # resumes mid-stage, with s2's optimizer and scheduler state
    assert fpar("--resume", str(killed.root)).wait() == 0

    assert without_seconds(killed) == without_seconds(whole)
    for which in ("last", "best"):
        a = read_checkpoint(whole.checkpoint(which)).state_dict
        b = read_checkpoint(killed.checkpoint(which)).state_dict
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), which
