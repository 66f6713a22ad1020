"""Items asked for by (seed, index) keys depend on those alone, not on the DataLoader's workers; the
run's loader (`train.batches.RunBatches`) gives each pass its own seed and loads ahead across passes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import torch

from fpar.config import DataConfig, default_workers
from fpar.data.datasets import make_dataset
from fpar.data.layout import class_names, discover
from fpar.train.batches import Pass, RunBatches
from fpar.train.distributed import Processes


def _dataset(root: Path, train: bool = True):
    samples = discover(root).samples
    cfg = DataConfig(frames=3, flow_stack=2, image_size=32, resize=40, frame_cache="off")
    return make_dataset(samples, class_names(samples), {"rgb", "flow"}, cfg, train=train)


def _batches(root: Path, workers: int, seed: int) -> list[dict]:
    torch.manual_seed(123)  # what would seed the workers' global RNG
    run = RunBatches(Processes(), {"train": _dataset(root)}, 4, [Pass("train", seed)], workers, seed=0)
    count, batches = run.take(Pass("train", seed))
    out = list(batches)
    run.close()
    assert len(out) == count
    return out


def _same(a: list[dict], b: list[dict]) -> bool:
    return all(x["sample_id"] == y["sample_id"] and torch.equal(x["rgb"], y["rgb"]) and torch.equal(x["flow"], y["flow"])
               for x, y in zip(a, b, strict=True))


@pytest.mark.slow
def test_items_are_the_same_for_any_number_of_workers(prepared_root: Path) -> None:
    alone = _batches(prepared_root, 0, seed=5)
    assert _same(alone, _batches(prepared_root, 2, seed=5))
    assert not _same(alone, _batches(prepared_root, 0, seed=6))  # the seed does matter
    assert _same(_batches(prepared_root, 0, seed=6), _batches(prepared_root, 0, seed=6))


def test_the_run_loader_gives_each_pass_its_seed_and_parts_in_order(prepared_root: Path) -> None:
    """Workers that load ahead across passes still give each pass its own part and seed, in the
    order a DataLoader over that pass alone would (training shuffled by its seed, validation in order)."""
    train, val = _dataset(prepared_root), _dataset(prepared_root, train=False)  # parts told apart by their items
    passes = [Pass("train", 5), Pass("val", 5), Pass("train", 6)]
    size = next(b for b in (3, 4, 5, 7) if len(train) % b)  # a last batch smaller than the others
    run = RunBatches(Processes(), {"train": train, "val": val}, size, passes, workers=2, seed=0)
    got = {}
    for step in passes:
        count, batches = run.take(step)
        got[step] = [next(batches)]
        if step == passes[0]:  # the next pass waits until this one is read whole
            with pytest.raises(RuntimeError, match="unread"):
                run.take(passes[1])
        got[step] += list(batches)
        assert len(got[step]) == count
    with pytest.raises(RuntimeError, match="out of order"):
        run.take(Pass("val", 6))
    assert multiprocessing.active_children()  # its workers, loading ahead
    run.close()
    assert not multiprocessing.active_children()  # ended by close, not left to the garbage collector
    for step in passes:
        order = list(Processes().sampler(train, shuffle=True, seed=step.seed)) if step.part == "train" else range(len(val))
        expected = [(train if step.part == "train" else val)[(step.seed, index)] for index in order]
        items = [{k: v[i] for k, v in batch.items()} for batch in got[step] for i in range(len(batch["label"]))]
        assert [g["sample_id"] for g in items] == [e["sample_id"] for e in expected]
        assert all(torch.equal(g["rgb"], e["rgb"]) and torch.equal(g["flow"], e["flow"]) for g, e in zip(items, expected))
    sizes = [len(b["label"]) for b in got[passes[0]]]
    assert sizes[:-1] == [size] * (len(sizes) - 1) and 0 < sizes[-1] < size


def test_default_workers_share_the_cores_among_local_processes(monkeypatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers() == 8  # capped
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_workers() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert default_workers() == 1
    assert DataConfig().workers == 1  # the field's default is this function's answer


class _Failing(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, key):
        raise OSError(f"item {key}: a corrupt image, say")


def test_a_batch_failing_in_a_worker_ends_the_workers() -> None:
    """The error of a worker's item reaches the caller, and the workers end with the generator
    although the error's traceback still holds the DataLoader's iterator."""
    run = RunBatches(Processes(), {"train": _Failing()}, 4, [Pass("train", 0)], workers=1, seed=0)
    with pytest.raises(OSError, match="corrupt") as raised:
        list(run.take(Pass("train", 0))[1])
    assert raised.traceback
    assert not multiprocessing.active_children()
    run.close()
