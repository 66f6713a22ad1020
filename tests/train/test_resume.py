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


def _interrupt(monkeypatch: pytest.MonkeyPatch, name: str, call: int) -> None:
    """`fpar.train.loop.<name>` raises on its `call`-th call (from 1): a kill at that point."""
    from fpar.train import loop

    real, calls = getattr(loop, name), []

    def cut(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt(f"killed in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, name, cut)


@pytest.mark.parametrize("where", ["promote_best", "metrics_csv"])  # just after state.pt commits / before it
def test_a_kill_around_the_commit_leaves_best_pt_what_state_pt_says(prepared_root: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     where: str) -> None:
    from fpar.train.run import train

    recipe = write_recipe(tmp_path, "rgb", [stage_yaml("s1", ["classifier"], 2)])
    run = RunDir(tmp_path / "run")
    stage_dir = run.root / "stages" / "s1"
    # promote_best: killed right after state.pt committed epoch 1 (epoch 1 always improves on -1);
    # metrics_csv: killed in epoch 2 before its commit, and a better best of that lost attempt waits
    _interrupt(monkeypatch, where, 1 if where == "promote_best" else 2)
    with pytest.raises(KeyboardInterrupt):
        train(recipe, run.root, [f"data.root={prepared_root}", *TINY])
    monkeypatch.undo()
    if where == "promote_best":
        assert [p.name for p in stage_dir.glob(".best-epoch*.pt.pending")] == [".best-epoch1.pt.pending"]
        assert not run.checkpoint("best", "s1").exists()
    else:
        (stage_dir / ".best-epoch2.pt.pending").write_bytes(b"the lost attempt's weights")
    train(None, None, resume=run.root)
    assert not list(stage_dir.glob(".best-epoch*.pt.pending"))
    with run.metrics.open() as handle:
        rows = list(csv.DictReader(handle))
    best = max(rows, key=lambda row: float(row["val_acc"]))  # the first of equals, as the trainer keeps
    extra = read_checkpoint(run.checkpoint("best", "s1")).extra
    assert (extra["epoch"], extra["val_acc"]) == (int(best["epoch"]), float(best["val_acc"]))
    assert run.checkpoint("best").samefile(run.checkpoint("best", "s1"))
