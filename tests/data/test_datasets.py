"""datasets.py: item shapes and dtypes, position alignment on both layouts, drops and bad files."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from fake_layout import DEFAULT_INSTANCES, FakeInstance, map_value, position_of
from PIL import Image
from torch.utils.data import DataLoader

from fpar.config import DataConfig
from fpar.data.datasets import (FlowStacks, RGBClips, RGBWithMotionMaps, TwoStreamClips, make_dataset,
                                read_image)
from fpar.data.layout import Sample, discover
from fpar.data.sampling import eval_flow_start, frame_positions
from fpar.data.transforms import FLOW_MEAN, FLOW_STD, IMAGENET_MEAN, IMAGENET_STD, ClipTransform
from fpar.errors import ConfigError, DataError

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


def _window_starts(flow: torch.Tensor) -> list[int]:
    """The start position of each window of a (S, 2L, H, W) item, checking each is one x/y window."""
    starts = []
    for window in flow:
        levels = _flow_levels(window)
        xs, ys = [position_of(v, "x") for v in levels[0::2]], [position_of(v, "y") for v in levels[1::2]]
        assert xs == ys == list(range(xs[0], xs[0] + len(xs)))
        starts.append(xs[0])
    return starts


@pytest.mark.parametrize("needs", [{"flow"}, {"rgb", "flow"}])
def test_segments_give_several_windows(make_root, needs: set[str]) -> None:
    """S1/open_jam/1 has 9 flows; L=3, S=3. Worked by hand in file numbers (position = file - 1):
    flow rule linspace(1, 7, 3, endpoint=False) = 1, 3, 5; two-stream rule linspace(1, 6, 3) =
    1, 3.5, 6; the single centre window would be file ceil(6 / 2) = 3."""
    samples = _loaded(make_root, "course")
    flow_rule = make_dataset(samples, CLASSES, needs, CFG, train=False, segments=3)
    assert flow_rule.samples[0].id == "S1/open_jam/1" and flow_rule.samples[0].n_flows == 9
    assert flow_rule[0]["flow"].shape == (3, 6, 16, 16)
    assert _window_starts(flow_rule[0]["flow"]) == [0, 2, 4]
    ends = dataclasses.replace(CFG, segment_rule="two_stream")
    assert _window_starts(make_dataset(samples, CLASSES, needs, ends, train=False, segments=3)[0]["flow"]) == [0, 2, 5]
    centre = make_dataset(samples, CLASSES, needs, CFG, train=False)[0]["flow"]
    assert _window_starts(centre[None]) == [2]


def test_an_unknown_segment_rule_or_rgb_span_is_a_config_error(make_root) -> None:
    samples = _loaded(make_root, "course")
    with pytest.raises(ConfigError, match="data.segment_rule must be one of flow, two_stream, got 'centre'"):
        make_dataset(samples, CLASSES, {"flow"}, dataclasses.replace(CFG, segment_rule="centre"), train=False)
    with pytest.raises(ConfigError, match="data.two_stream_rgb_over must be one of frames, flows, got 'n'"):
        make_dataset(samples, CLASSES, {"rgb", "flow"}, dataclasses.replace(CFG, two_stream_rgb_over="n"),
                     train=False)


def test_two_stream_frames_spread_over_frames_or_over_flows(make_root) -> None:
    """A 10-frame instance (9 flows), N=7, worked by hand: over the frames linspace(1, 10, 7) floors
    to 1, 2, 3, 4, 6, 7, 8; over the flows (Ego-RNN's two-stream dataset) linspace(1, 9, 7) to 1..7."""
    samples = _loaded(make_root, "egornn", (FakeInstance("S1", "open_jam", frames=10),))
    cfg = dataclasses.replace(CFG, frames=7)
    default = make_dataset(samples, CLASSES, {"rgb", "flow"}, cfg, train=False)
    over_flows = make_dataset(samples, CLASSES, {"rgb", "flow"}, dataclasses.replace(cfg, two_stream_rgb_over="flows"),
                              train=False)
    assert [position_of(v, "rgb") for v in _rgb_levels(default[0]["rgb"])] == [1, 2, 3, 4, 6, 7, 8]
    assert [position_of(v, "rgb") for v in _rgb_levels(over_flows[0]["rgb"])] == [1, 2, 3, 4, 5, 6, 7]
    # the option is the two-stream dataset's only: the RGB dataset spreads over the frames whatever it says
    rgb = make_dataset(samples, CLASSES, {"rgb"}, dataclasses.replace(cfg, two_stream_rgb_over="flows"), train=False)
    assert [position_of(v, "rgb") for v in _rgb_levels(rgb[0]["rgb"])] == [1, 2, 3, 4, 6, 7, 8]


def test_two_stream_over_flows_drops_instances_whose_frames_cannot_cover_the_flows(make_root) -> None:
    """8 flows but 6 frames (inconsistent counts, which `data check` reports): spread over the
    flows, N frames would read positions up to 7; spread over the frames the instance is usable."""
    samples = _loaded(make_root, "course", (FakeInstance("S1", "open_jam", "1", frames=6, flows=8),
                                            FakeInstance("S1", "open_jam", "2")))
    over_flows = dataclasses.replace(CFG, two_stream_rgb_over="flows")
    with pytest.warns(UserWarning, match=r"S1/open_jam/1 \(6 frames, 8 flows: too few to spread frames over the flows\)"):
        assert [s.id for s in make_dataset(samples, CLASSES, {"rgb", "flow"}, over_flows, train=False).samples] == [
            "S1/open_jam/2"]
    assert len(make_dataset(samples, CLASSES, {"rgb", "flow"}, CFG, train=False)) == 2


def _textured_root(make_root) -> list[Sample]:
    """One instance whose frames, x flows and y flows are all the same random texture (32x24)."""
    samples = _loaded(make_root, "course", (FakeInstance("S1", "open_jam", frames=6),))
    texture = np.random.default_rng(0).integers(0, 256, (24, 32), dtype=np.uint8)
    sample = samples[0]
    for path in sample.frames:
        Image.fromarray(np.repeat(texture[..., None], 3, axis=2)).save(path)
    for path in (*sample.flow_x, *sample.flow_y):
        Image.fromarray(texture).save(path)
    return samples


def test_two_stream_items_share_one_flip_and_crop_in_training(make_root) -> None:
    """Frames and flows show the same texture, so under one flip and crop every RGB frame equals
    every y-flow plane (un-normalised), and every x plane too, or its inverse when flipped. A
    separate draw for the flow would crop or flip it differently (39 in 40 draws)."""
    dataset = make_dataset(_textured_root(make_root), CLASSES, {"rgb", "flow"}, CFG, train=True)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    torch.manual_seed(0)
    seen = set()
    for _ in range(16):
        item = dataset[0]
        frame = (item["rgb"][0] * std + mean)[0]  # one channel: all three hold the texture
        planes = item["flow"] * FLOW_STD + FLOW_MEAN
        flipped = bool((planes[0] - frame).abs().max() > 1e-3)  # x inverted: 1 - v
        for t in range(CFG.frames):
            torch.testing.assert_close((item["rgb"][t] * std + mean)[0], frame, atol=1e-5, rtol=0)
        for y in planes[1::2]:
            torch.testing.assert_close(y, frame, atol=1e-5, rtol=0)
        for x in planes[0::2]:
            torch.testing.assert_close(x, 1 - frame if flipped else frame, atol=1.01 / 255, rtol=0)
        seen.add((flipped, round(float(frame.mean()), 3)))
    assert {flip for flip, _ in seen} == {False, True} and len(seen) > 4  # flips and several crops were drawn


def test_short_samples_are_dropped_with_a_warning_naming_them(make_root) -> None:
    """As Ego-RNN: RGB datasets keep >= 5 frames whatever N; flow and two-stream count only flows."""
    instances = (FakeInstance("S1", "open_jam", "1", frames=4), FakeInstance("S1", "open_jam", "2", frames=8),
                 FakeInstance("S1", "take_cup", "1", frames=8, flows=2))
    samples = _loaded(make_root, "course", instances)
    for needs in ({"rgb"}, {"rgb", "mmaps"}):
        with pytest.warns(UserWarning, match=r"dropped 1 sample\(s\): S1/open_jam/1 \(4 frames, needs 5\)"):
            assert len(make_dataset(samples, CLASSES, needs, CFG, train=True)) == 2
    for needs in ({"flow"}, {"rgb", "flow"}):  # 4 frames, 3 flows = L: kept
        with pytest.warns(UserWarning) as record:
            dataset = make_dataset(samples, CLASSES, needs, CFG, train=True)
        assert len(record) == 1 and str(record[0].message).endswith("dropped 1 sample(s): S1/take_cup/1 "
                                                                     "(2 flows, needs 3)")
        assert [s.id for s in dataset.samples] == ["S1/open_jam/1", "S1/open_jam/2"]
        assert [s.id for s, _ in dataset.dropped] == ["S1/take_cup/1"]


def test_instances_shorter_than_n_are_kept_and_repeat_frames(make_root) -> None:
    """5 frames, N=7 (GTEA61 at N=25 has such test instances): kept, frames at the reference's
    floor(linspace(1, 5, 7, endpoint=False)) = 1, 1.57, 2.14, 2.71, 3.29, 3.86, 4.43, worked by hand."""
    samples = _loaded(make_root, "course", (FakeInstance("S1", "open_jam", frames=5),))
    cfg = dataclasses.replace(CFG, frames=7)
    for needs in ({"rgb"}, {"rgb", "mmaps"}, {"rgb", "flow"}):
        item = make_dataset(samples, CLASSES, needs, cfg, train=False)[0]
        assert [position_of(v, "rgb") for v in _rgb_levels(item["rgb"])] == [1, 1, 2, 2, 3, 3, 4]
    two_stream = make_dataset(samples, CLASSES, {"rgb", "flow"}, dataclasses.replace(cfg, two_stream_rgb_over="flows"),
                              train=False)  # over 4 flows: 1, 1.43, 1.86, 2.29, 2.71, 3.14, 3.57
    assert [position_of(v, "rgb") for v in _rgb_levels(two_stream[0]["rgb"])] == [1, 1, 1, 2, 2, 3, 3]


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
