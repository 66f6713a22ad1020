"""`ClipDataset.set_seed`: an epoch's items depend on (seed, index) only, not on the DataLoader's workers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from fpar.config import DataConfig, default_workers
from fpar.data.datasets import make_dataset
from fpar.data.layout import class_names, discover


def _batches(root: Path, workers: int, seed: int | None) -> list[dict]:
    samples = discover(root).samples
    cfg = DataConfig(frames=3, flow_stack=2, image_size=32, resize=40, frame_cache="off")
    dataset = make_dataset(samples, class_names(samples), {"rgb", "flow"}, cfg, train=True)
    dataset.set_seed(seed)
    torch.manual_seed(123)  # what seeds workers' global RNG when no item seed is set
    loader = DataLoader(dataset, batch_size=4, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(7))
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


def test_default_workers_share_the_cores_among_local_processes(monkeypatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers() == 8  # capped
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_workers() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert default_workers() == 1
    assert DataConfig().workers == 1  # the field's default is this function's answer
