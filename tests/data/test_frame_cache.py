"""frame_cache.py: cached items equal decoded ones bit for bit, the cache is used, and it recovers
from changed sources, bad entries and folders it cannot write."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fpar.data.datasets as datasets_module
from fpar.config import DataConfig
from fpar.data.datasets import DATASETS, make_dataset
from fpar.data.frame_cache import ENV_CACHE_DIR, FrameCache, default_folder
from fpar.data.layout import class_names, discover
from fpar.errors import ConfigError


def _datasets(root: Path, keys: frozenset[str], cache: str, train: bool = True):
    samples = discover(root).samples
    cfg = DataConfig(root=str(root), frames=3, flow_stack=2, image_size=32, resize=40, frame_cache=cache)
    return make_dataset(samples, class_names(samples), keys, cfg, train=train)


def _items(dataset, seed: int = 0) -> list[dict]:
    torch.manual_seed(seed)
    return [dataset[index] for index in range(len(dataset))]


def _assert_same(ours: list[dict], theirs: list[dict]) -> None:
    for a, b in zip(ours, theirs, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("keys", list(DATASETS), ids=lambda keys: "+".join(sorted(keys)))
def test_cached_items_equal_decoded_items(prepared_root: Path, tmp_path: Path, keys: frozenset[str]) -> None:
    plain = _items(_datasets(prepared_root, keys, "off"))
    cached = _datasets(prepared_root, keys, str(tmp_path / "cache"))
    _assert_same(_items(cached), plain)  # cold: entries written
    assert list((tmp_path / "cache").rglob("*.npy"))
    _assert_same(_items(cached), plain)  # warm: entries read


def test_sizes_share_a_folder_without_mixing(prepared_root: Path, tmp_path: Path) -> None:
    def dataset(resize: int, cache: str):
        samples = discover(prepared_root).samples
        cfg = DataConfig(frames=3, image_size=32, resize=resize, frame_cache=cache)
        return make_dataset(samples, class_names(samples), {"rgb", "mmaps"}, cfg, train=False)

    for resize in (40, 48):
        _assert_same(_items(dataset(resize, str(tmp_path))), _items(dataset(resize, "off")))


def test_a_warm_cache_decodes_nothing(prepared_root: Path, tmp_path: Path, monkeypatch) -> None:
    dataset = _datasets(prepared_root, frozenset({"rgb", "mmaps"}), str(tmp_path), train=False)
    _items(dataset)
    monkeypatch.setattr(datasets_module, "read_image", _no_decoding)
    assert len(_items(dataset)) == len(dataset)


@pytest.mark.parametrize("keys", list(DATASETS), ids=lambda keys: "+".join(sorted(keys)))
def test_fill_cache_holds_every_image_an_item_can_draw(prepared_root: Path, tmp_path: Path, monkeypatch,
                                                       keys: frozenset[str]) -> None:
    dataset = _datasets(prepared_root, keys, str(tmp_path), train=True)
    assert dataset.fill_cache() > 0
    monkeypatch.setattr(datasets_module, "read_image", _no_decoding)
    for seed in range(5):  # random flow windows, flips and crops
        assert len(_items(dataset, seed)) == len(dataset)
    assert _datasets(prepared_root, keys, "off").fill_cache() == 0


def test_the_default_folder_follows_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path))
    assert default_folder() == tmp_path / "frames"
    assert FrameCache.from_setting("auto").folder == tmp_path / "frames"
    monkeypatch.delenv(ENV_CACHE_DIR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_folder() == tmp_path / "xdg" / "fpar" / "frames"
    assert FrameCache.from_setting("off") is None
    assert FrameCache.from_setting(str(tmp_path / "mine")).folder == tmp_path / "mine"
    with pytest.raises(ConfigError, match="data.frame_cache"):
        FrameCache.from_setting("")


def _image_file(path: Path, value: int) -> Path:
    Image.fromarray(np.full((6, 8), value, np.uint8)).save(path)
    return path


def _loader(value: int):
    calls = []

    def make() -> np.ndarray:
        calls.append(value)
        return np.full((1, 6, 8), value, np.uint8)

    return make, calls


def test_a_changed_source_is_read_afresh(tmp_path: Path) -> None:
    cache, source = FrameCache(tmp_path / "cache"), _image_file(tmp_path / "a.png", 10)
    make, calls = _loader(10)
    assert cache.load(source, "v", make, 1, 6)[0, 0, 0] == 10
    assert cache.load(source, "v", make, 1, 6)[0, 0, 0] == 10 and calls == [10]  # second load from the cache
    _image_file(source, 99)
    os.utime(source, ns=(1, 1))  # a new modification time whatever the clock's resolution
    make, calls = _loader(99)
    assert cache.load(source, "v", make, 1, 6)[0, 0, 0] == 99 and calls == [99]
    other, calls = _loader(7)
    assert cache.load(source, "another size", other, 1, 6)[0, 0, 0] == 7 and calls == [7]  # variants kept apart


@pytest.mark.parametrize("content", [b"", b"not an array", "pickle", "float", "flat", "zip", "huge", "rgb",
                                     "short", "truncated"])
def test_a_bad_entry_is_made_again(tmp_path: Path, content) -> None:
    cache, source = FrameCache(tmp_path / "cache"), _image_file(tmp_path / "a.png", 10)
    make, _ = _loader(10)
    cache.load(source, "v", make, 1, 6)
    (entry,) = (tmp_path / "cache").rglob("*.npy")
    if content == "pickle":
        np.save(entry, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    elif content == "float":
        np.save(entry, np.zeros((1, 6, 8)))
    elif content == "flat":
        np.save(entry, np.zeros((6, 8), np.uint8))
    elif content == "zip":  # np.load would hand back an NpzFile
        with entry.open("wb") as handle:
            np.savez(handle, a=np.zeros((1, 6, 8), np.uint8))
    elif content == "huge":  # a header that claims 40 GB: never allocated
        with entry.open("wb") as handle:
            np.lib.format.write_array_header_1_0(handle, {"descr": "|u1", "fortran_order": False,
                                                          "shape": (1, 200_000, 200_000)})
    elif content == "rgb":  # 3 channels where a gray image is cached
        np.save(entry, np.zeros((3, 6, 8), np.uint8))
    elif content == "short":  # another resize's size
        np.save(entry, np.zeros((1, 5, 8), np.uint8))
    elif content == "truncated":
        entry.write_bytes(entry.read_bytes()[:-5])
    else:
        entry.write_bytes(content)
    make, calls = _loader(10)
    assert cache.load(source, "v", make, 1, 6)[0, 0, 0] == 10 and calls == [10]
    assert np.load(entry, allow_pickle=False).dtype == np.uint8  # rewritten


@pytest.mark.parametrize("where", ["under a file", "under /proc"])
def test_a_folder_that_cannot_be_written_warns_once_and_loading_goes_on(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    folder = blocker / "cache" if where == "under a file" else Path("/proc/fpar-no-such/cache")  # ENOENT there
    cache, source = FrameCache(folder), _image_file(tmp_path / "a.png", 10)
    make, calls = _loader(10)
    with pytest.warns(UserWarning, match="cannot write"):
        assert cache.load(source, "v", make, 1, 6)[0, 0, 0] == 10
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache.load(source, "v", make, 1, 6)[0, 0, 0] == 10 and calls == [10, 10]
    assert not caught  # warned once, then quiet


def _no_decoding(*args, **kwargs):
    raise AssertionError("a warm cache decoded an image")


def test_size_and_clear_touch_only_the_caches_own_files(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from fpar.cli import app

    folder = tmp_path / "cache"
    cache = FrameCache(folder)
    for value in (1, 2):
        make, _ = _loader(value)
        cache.load(_image_file(tmp_path / f"{value}.png", value), "v", make, 1, 6)
    (folder / "notes.txt").parent.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("the user's own file")
    (folder / "ab").mkdir(exist_ok=True)
    (folder / "ab" / "mine.npy").write_bytes(b"not the cache's")
    files, size = cache.size()
    assert files == 2 and size > 2 * 48
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "elsewhere"))
    shown = CliRunner().invoke(app, ["data", "cache", "--folder", str(folder)])
    assert shown.exit_code == 0 and "holds 2 file(s)" in shown.output
    cleared = CliRunner().invoke(app, ["data", "cache", "--folder", str(folder), "--clear"])
    assert cleared.exit_code == 0 and "removed 2 file(s)" in cleared.output
    assert cache.size() == (0, 0)
    assert (folder / "notes.txt").is_file() and (folder / "ab" / "mine.npy").is_file()


def test_a_nearly_full_disk_stops_the_cache_before_it_fills_it(tmp_path: Path, monkeypatch) -> None:
    from collections import namedtuple

    import fpar.data.frame_cache as frame_cache

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(frame_cache.shutil, "disk_usage", lambda _: usage(10 * 2**30, 9 * 2**30, 2**30 - 1))
    cache, source = FrameCache(tmp_path / "cache"), _image_file(tmp_path / "a.png", 10)
    make, calls = _loader(10)
    with pytest.warns(UserWarning, match="GiB free"):
        assert cache.load(source, "v", make, 1, 6)[0, 0, 0] == 10
    assert cache.size() == (0, 0)
