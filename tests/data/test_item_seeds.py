"""Items asked for by (seed, index) keys (`EpochKeys`) depend on those alone, not on the DataLoader's workers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from fpar.config import DataConfig, default_workers
from fpar.data.datasets import make_dataset
from fpar.data.layout import class_names, discover
from fpar.train.distributed import Processes


def _batches(root: Path, workers: int, seed: int) -> list[dict]:
    samples = discover(root).samples
    cfg = DataConfig(frames=3, flow_stack=2, image_size=32, resize=40, frame_cache="off")
    dataset = make_dataset(samples, class_names(samples), {"rgb", "flow"}, cfg, train=True)
    keys = Processes().keys(dataset, shuffle=True)
    keys.set_seed(seed)
    torch.manual_seed(123)  # what would seed the workers' global RNG
    loader = DataLoader(dataset, batch_size=4, sampler=keys, num_workers=workers, persistent_workers=workers > 0)
    return list(loader)


def _same(a: list[dict], b: list[dict]) -> bool:
    return all(x["sample_id"] == y["sample_id"] and torch.equal(x["rgb"], y["rgb"]) and torch.equal(x["flow"], y["flow"])
               for x, y in zip(a, b, strict=True))


@pytest.mark.slow
def test_items_are_the_same_for_any_number_of_workers(prepared_root: Path) -> None:
    alone = _batches(prepared_root, 0, seed=5)
    assert _same(alone, _batches(prepared_root, 2, seed=5))
    assert not _same(alone, _batches(prepared_root, 0, seed=6))  # the seed does matter
    assert _same(_batches(prepared_root, 0, seed=6), _batches(prepared_root, 0, seed=6))


def test_a_persistent_loader_follows_each_epochs_seed(prepared_root: Path) -> None:
    """Workers that live across epochs still get each epoch's seed: it travels with the keys."""
    samples = discover(prepared_root).samples
    cfg = DataConfig(frames=3, flow_stack=2, image_size=32, resize=40, frame_cache="off")
    dataset = make_dataset(samples, class_names(samples), {"rgb", "flow"}, cfg, train=True)
    keys = Processes().keys(dataset, shuffle=True)
    loader = DataLoader(dataset, batch_size=4, sampler=keys, num_workers=2, persistent_workers=True)
    epochs = []
    for seed in (5, 6):
        keys.set_seed(seed)
        epochs.append(list(loader))
    for seed, batches in zip((5, 6), epochs):
        order = list(Processes().sampler(dataset, shuffle=True, seed=seed))
        expected = [dataset[(seed, index)] for index in order]  # in this process, straight from the seed
        got = [{k: v[i] for k, v in batch.items()} for batch in batches for i in range(len(batch["label"]))]
        assert [g["sample_id"] for g in got] == [e["sample_id"] for e in expected]
        assert all(torch.equal(g["rgb"], e["rgb"]) and torch.equal(g["flow"], e["flow"]) for g, e in zip(got, expected))


def test_default_workers_share_the_cores_among_local_processes(monkeypatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers() == 8  # capped
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_workers() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert default_workers() == 1
    assert DataConfig().workers == 1  # the field's default is this function's answer
