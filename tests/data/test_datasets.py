"""datasets.py: item shapes and dtypes, position alignment on both layouts, drops and bad files."""

from __future__ import annotations

import pytest
import torch
from fake_layout import DEFAULT_INSTANCES, FakeInstance, map_value, position_of
from torch.utils.data import DataLoader

from fpar.config import DataConfig
from fpar.data.datasets import (FlowStacks, RGBClips, RGBWithMotionMaps, TwoStreamClips, make_dataset,
                                read_image)
from fpar.data.layout import Sample, discover
from fpar.data.sampling import eval_flow_start, frame_positions
from fpar.data.transforms import FLOW_MEAN, FLOW_STD, IMAGENET_MEAN, IMAGENET_STD, ClipTransform
from fpar.errors import DataError

CFG = DataConfig(frames=4, flow_stack=3, image_size=16, resize=20)
CLASSES = ["open_jam", "take_cup"]  # put_tea excluded


def _loaded(make_root, layout: str, instances: tuple[FakeInstance, ...] = DEFAULT_INSTANCES) -> list[Sample]:
    return discover(make_root(layout, instances)).samples


def _rgb_levels(rgb: torch.Tensor) -> list[float]:
    """Mean gray level (0..255) of each frame of a (T, 3, H, W) clip, un-normalised."""
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return [float((frame * std + mean).mean() * 255) for frame in rgb]


def _flow_levels(flow: torch.Tensor) -> list[float]:
    return [float((plane * FLOW_STD + FLOW_MEAN).mean() * 255) for plane in flow]


@pytest.mark.parametrize(("needs", "kind"), [
    ({"rgb"}, RGBClips), ({"flow"}, FlowStacks), ({"rgb", "mmaps"}, RGBWithMotionMaps),
    ({"rgb", "flow"}, TwoStreamClips),
])
@pytest.mark.parametrize("train", [False, True])
def test_items_have_the_documented_shapes_and_dtypes(make_root, needs: set[str], kind: type, train: bool) -> None:
    dataset = make_dataset(_loaded(make_root, "course"), CLASSES, needs, CFG, train=train)
    assert type(dataset) is kind and len(dataset) == 6  # put_tea left out
    item = dataset[0]
    assert set(item) == needs | {"label", "sample_id"}
    assert item["label"].dtype == torch.int64 and item["label"].shape == ()
    assert item["sample_id"] == "S1/open_jam/1" and int(item["label"]) == 0
    if "rgb" in needs:
        assert item["rgb"].shape == (4, 3, 16, 16) and item["rgb"].dtype == torch.float32
    if "flow" in needs:
        assert item["flow"].shape == (6, 16, 16) and item["flow"].dtype == torch.float32
    if "mmaps" in needs:
        assert item["mmaps"].shape == (4, 16, 16) and item["mmaps"].dtype == torch.int64


@pytest.mark.parametrize(("layout", "needs"), [("course", {"rgb", "mmaps"}), ("course", {"rgb", "flow"}),
                                               ("egornn", {"rgb", "flow"})])
def test_items_carry_the_sampled_positions(make_root, layout: str, needs: set[str]) -> None:
    """Frame k, flow k (frame k -> k+1) and map k line up: the fake images encode their position."""
    dataset = make_dataset(_loaded(make_root, layout), CLASSES, needs, CFG, train=False)
    for index in range(len(dataset)):
        sample, item = dataset.samples[index], dataset[index]
        frames = frame_positions(sample.n_frames, CFG.frames)
        assert [position_of(v, "rgb") for v in _rgb_levels(item["rgb"])] == frames
        if "mmaps" in needs:
            assert [int(m.float().mean().round()) for m in item["mmaps"]] == [map_value(p) // 255 for p in frames]
        if "flow" in needs:
            start = eval_flow_start(sample.n_flows, CFG.flow_stack)
            levels = _flow_levels(item["flow"])
            window = list(range(start, start + CFG.flow_stack))
            assert [position_of(v, "x") for v in levels[0::2]] == window
            assert [position_of(v, "y") for v in levels[1::2]] == window


def test_last_frame_uses_the_last_map(make_root) -> None:
    samples = _loaded(make_root, "course", (FakeInstance("S1", "open_jam", frames=5, maps=4),))
    item = RGBWithMotionMaps(samples, CLASSES, ClipTransform(16, 20), frames=4)[0]
    assert frame_positions(5, 4) == [1, 2, 3, 4]  # position 4 has no map of its own: it reuses map 3
    assert [int(m.float().mean().round()) for m in item["mmaps"]] == [1, 0, 1, 1]


def test_flipped_flow_items_have_inverted_x(make_root) -> None:
    """Encoded x levels are below 128, so an inverted (255 - v) stack shows; y is never inverted."""
    dataset = make_dataset(_loaded(make_root, "course"), CLASSES, {"flow"}, CFG, train=True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(12):
        levels = _flow_levels(dataset[0]["flow"])
        inverted = levels[0] > 127
        xs = [position_of(255 - v if inverted else v, "x") for v in levels[0::2]]
        ys = [position_of(v, "y") for v in levels[1::2]]
        assert xs == ys == list(range(xs[0], xs[0] + CFG.flow_stack))  # x and y of one window
        seen.add(inverted)
    assert seen == {False, True}


def test_segments_give_several_windows(make_root) -> None:
    dataset = make_dataset(_loaded(make_root, "course"), CLASSES, {"flow"}, CFG, train=False, segments=3)
    assert dataset[0]["flow"].shape == (3, 6, 16, 16)


def test_short_samples_are_dropped_with_a_warning_naming_them(make_root) -> None:
    instances = (FakeInstance("S1", "open_jam", "1", frames=3), FakeInstance("S1", "open_jam", "2", frames=8),
                 FakeInstance("S1", "take_cup", "1", frames=8, flows=2))
    samples = _loaded(make_root, "course", instances)
    with pytest.warns(UserWarning, match=r"dropped 1 sample\(s\): S1/open_jam/1 \(3 frames, needs 4\)"):
        assert len(make_dataset(samples, CLASSES, {"rgb"}, CFG, train=True)) == 2
    with pytest.warns(UserWarning) as record:
        dataset = make_dataset(samples, CLASSES, {"rgb", "flow"}, CFG, train=True)
    assert "S1/take_cup/1 (2 flows, needs 3)" in str(record[0].message)
    assert [s.id for s, _ in dataset.dropped] == ["S1/open_jam/1", "S1/take_cup/1"]


def test_no_usable_sample_is_an_error(make_root) -> None:
    samples = _loaded(make_root, "egornn")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="no usable samples.*no motion maps"):
        make_dataset(samples, CLASSES, {"rgb", "mmaps"}, CFG, train=False)


def test_unknown_input_set_is_an_error(make_root) -> None:
    with pytest.raises(DataError, match=r"no dataset gives inputs \['flow', 'mmaps'\]"):
        make_dataset(_loaded(make_root, "course"), CLASSES, {"flow", "mmaps"}, CFG, train=False)


@pytest.mark.parametrize("content", [b"", b"not an image", None])
def test_unreadable_images_raise_data_error_naming_the_file(make_root, content: bytes | None) -> None:
    samples = _loaded(make_root, "course")
    dataset = make_dataset(samples, CLASSES, {"rgb"}, CFG, train=False)
    bad = samples[0].frame(frame_positions(samples[0].n_frames, CFG.frames)[1])
    if content is None:  # a truncated PNG
        content = bad.read_bytes()[:60]
    bad.write_bytes(content)
    with pytest.raises(DataError, match=f"{bad}: unreadable image"):
        dataset[0]
    with pytest.raises(DataError, match=f"^{bad}: unreadable image"):
        read_image(bad)


def test_items_are_reproducible_under_workers_with_a_seed(make_root) -> None:
    dataset = make_dataset(_loaded(make_root, "course"), CLASSES, {"rgb", "flow"}, CFG, train=True)

    def epoch() -> list[torch.Tensor]:
        torch.manual_seed(7)
        loader = DataLoader(dataset, batch_size=3, num_workers=2)
        return [torch.cat([b["rgb"].flatten(), b["flow"].flatten()]) for b in loader]

    first, second = epoch(), epoch()
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    torch.manual_seed(8)
    third = [torch.cat([b["rgb"].flatten(), b["flow"].flatten()]) for b in DataLoader(dataset, 3, num_workers=2)]
    assert not all(torch.equal(a, b) for a, b in zip(first, third, strict=True))
