"""Scale-out: the data each rank reads, and `fpar train` under torchrun with 2 gloo processes
against one process; the loop's recipe switches (bf16 autocast, channels_last off and on) on the CPU."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY, stage_yaml, write_recipe
from fpar.errors import ConfigError
from fpar.models import read_checkpoint
from fpar.train.distributed import Processes
from fpar.train.rundir import RunDir
from fpar.train.run import train

WORKER = Path(__file__).with_name("ddp_worker.py")
ENV = {**os.environ, "PYTHONPATH": f"{Path(__file__).parents[2] / 'src'}", "OMP_NUM_THREADS": "1"}


def batches(processes: Processes, n: int, global_batch: int, seed: int) -> list[list[int]]:
    order = list(processes.sampler(list(range(n)), shuffle=True, seed=seed))
    size = processes.batch_size(global_batch)
    return [order[i:i + size] for i in range(0, len(order), size)]


def test_two_ranks_together_read_exactly_the_batches_of_one_process() -> None:
    one = batches(Processes(), 20, 4, seed=7)
    rank0, rank1 = (batches(Processes(r, 2), 20, 4, seed=7) for r in (0, 1))
    assert len(rank0) == len(rank1) == len(one) == 5
    assert all(sorted(a + b) == sorted(c) for a, b, c in zip(rank0, rank1, one))
    assert one != batches(Processes(), 20, 4, seed=8)  # and the order is the seed's


def test_validation_is_shared_out_without_repeats() -> None:
    shards = [Processes(r, 3).sampler(list(range(10)), shuffle=False, seed=0) for r in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(10))
    assert Processes().sampler(list(range(10)), shuffle=False, seed=0) is None  # one process: in order


def test_the_global_batch_must_divide_by_the_processes() -> None:
    assert Processes(0, 2).batch_size(8) == 4
    with pytest.raises(ConfigError, match="global batch"):
        Processes(1, 3).batch_size(8)


def ddp_recipe(folder: Path) -> Path:
    """Stage 2 trains the backbone fc, whose bias never gets a gradient (DDP's unused parameters)."""
    return write_recipe(folder, "rgb_ms", [
        stage_yaml("s1", ["lstm", "classifier", "ms_head"], 1),
        stage_yaml("s2", ["lstm", "classifier", "ms_head", "backbone_fc", "layer4_convs"], 2,
                   "    optimizer: sgd\n    lr: 1.0e-2\n")])


def launch(args: list[str], weights: Path, processes: int, stop_after: int = 0) -> subprocess.CompletedProcess:
    """The harness under `torchrun --standalone --nproc_per_node N` (N > 1) or as one process."""
    weights.mkdir(parents=True, exist_ok=True)
    env = {**ENV, "WEIGHTS": str(weights), **({"STOP_AFTER": str(stop_after)} if stop_after else {})}
    runner = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    return subprocess.run([sys.executable, *runner, str(WORKER), *args], env=env, capture_output=True, text=True)


def metrics(run: RunDir) -> list[dict[str, str]]:
    with run.metrics.open() as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1])  # 1: each rank's loaders keep a worker for the whole run
def test_two_gloo_processes_match_one_process_and_resume_exactly(prepared_root: Path, tmp_path: Path,
                                                                 workers: int) -> None:
    # 20 training clips, global batch 4: 5 steps an epoch, 2 clips per rank per step
    args = [str(ddp_recipe(tmp_path)), f"data.root={prepared_root}", *TINY, "train.device=cpu",
            f"data.workers={workers}"]
    one, two, cut = (RunDir(tmp_path / name) for name in ("one", "two", "cut"))
    for run, processes in ((one, 1), (two, 2)):
        done = launch([*args, "--out", str(run.root)], tmp_path / f"{run.root.name}-weights", processes)
        assert done.returncode == 0, done.stderr[-3000:]

    ranks = [torch.load(tmp_path / "two-weights" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    single = torch.load(tmp_path / "one-weights" / "rank0.pt", weights_only=True)
    saved = read_checkpoint(two.checkpoint("last")).state_dict
    assert all(torch.equal(ranks[0][k], ranks[1][k]) and torch.equal(ranks[0][k], saved[k]) for k in saved)
    moved = [k for k in saved if "layer4" in k and not torch.equal(saved[k], read_checkpoint(
        two.checkpoint("last", "s1")).state_dict[k])]
    assert moved  # stage 2 did train the backbone under DDP
    # the same arithmetic up to the order of float sums: each weight within 2% of how far stage 2
    # moved it (measured: under 0.8%); a wrong batch pairing or a gradient sum instead of a mean
    # is off by about the move itself
    before = read_checkpoint(one.checkpoint("last", "s1")).state_dict
    for key in single:
        move = (single[key] - before[key]).abs().max().item()
        assert (ranks[0][key] - single[key]).abs().max().item() <= 0.02 * move + 1e-7, key
    for a, b in zip(metrics(one), metrics(two), strict=True):
        assert a["stage"] == b["stage"] and a["epoch"] == b["epoch"]
        assert all(abs(float(a[k]) - float(b[k])) < 1e-3 for k in ("train_loss", "train_acc", "val_loss", "val_acc"))

    # killed after s2's first epoch (the 2nd of the run), then `--resume` under torchrun
    stopped = launch([*args, "--out", str(cut.root)], tmp_path / "cut-weights", 2, stop_after=2)
    assert stopped.returncode != 0 and len(metrics(cut)) == 2
    resumed = launch(["--resume", str(cut.root)], tmp_path / "cut-weights", 2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert metrics(cut) == metrics(two)
    a, b = read_checkpoint(cut.checkpoint("last")).state_dict, saved
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("switch", ["train.amp=bf16", "train.channels_last=false"])
def test_a_train_step_runs_with_the_loop_switches_on_cpu(prepared_root: Path, tmp_path: Path, switch: str) -> None:
    recipe = write_recipe(tmp_path, "rgb_ms", [stage_yaml("s1", ["lstm", "classifier", "ms_head"], 1)])
    out = tmp_path / "run"
    train(recipe, out, [*TINY, f"data.root={prepared_root}", "train.device=cpu", switch])
    row = metrics(RunDir(out))[0]
    assert all(torch.isfinite(torch.tensor(float(row[k]))) for k in ("train_loss", "train_loss_ms", "val_loss"))
    start = read_checkpoint(out / "last.pt").state_dict
    assert any(not torch.equal(start[k], v) for k, v in _initial(recipe, prepared_root, switch).items() if k in start)


def _initial(recipe: Path, root: Path, switch: str) -> dict[str, torch.Tensor]:
    """The run's initial weights (the plan seeds them), to show the step changed them."""
    from fpar.config import load_recipe
    from fpar.train.run import make_plan

    return make_plan(load_recipe(recipe, [*TINY, f"data.root={root}", "train.device=cpu", switch])).model.state_dict()
