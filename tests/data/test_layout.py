"""layout.py: discovery of both layouts, file names per position, class list and user splits."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fake_layout import FakeInstance

from fpar.data.layout import COURSE, EGORNN, Sample, class_names, detect_layout, discover, split_by_user
from fpar.errors import DataError


@pytest.mark.parametrize("layout", ["course", "egornn"])
def test_discover_finds_every_instance(make_root, layout: str) -> None:
    found = discover(make_root(layout))
    assert found.layout.name == layout
    assert found.problems == []
    assert found.users == ["S1", "S2"]
    assert len(found.samples) == 7
    jam = next(s for s in found.samples if s.id == "S1/open_jam/2")
    assert (jam.n_frames, jam.n_flows) == (12, 11)
    assert len(jam.mmaps) == (12 if layout == "course" else 0)


def test_positions_map_to_the_layouts_file_names(make_root) -> None:
    """DESIGN section 7: Ego-RNN frames from 0, its flows from 1; the course layout all from 1."""
    course = discover(make_root("course")).samples[0]
    assert (course.frame(0).name, course.frame(9).name) == ("rgb0001.png", "rgb0010.png")
    assert course.frame(0).parent.name == "rgb" and course.mmap(0).parent.name == "mmaps"
    assert (course.flow("x", 0).name, course.flow("y", 8).name) == ("flow_x_00001.png", "flow_y_00009.png")
    assert course.mmap(3).name == "map0004.png"
    egornn = discover(make_root("egornn")).samples[0]
    assert (egornn.frame(0).name, egornn.frame(9).name) == ("image_00000.jpg", "image_00009.jpg")
    assert (egornn.flow("x", 0).name, egornn.flow("y", 8).name) == ("flow_x_00001.jpg", "flow_y_00009.jpg")
    with pytest.raises(ValueError, match="axis"):
        egornn.flow("z", 0)


def test_last_frame_reuses_the_last_map_when_maps_are_one_short(make_root) -> None:
    root = make_root("course", (FakeInstance("S1", "open_jam", frames=6, maps=5),))
    sample = discover(root).samples[0]
    assert sample.mmap(4).name == "map0005.png"
    assert sample.mmap(5) == sample.mmap(4)


def test_instances_sort_numerically(make_root) -> None:
    root = make_root("egornn", tuple(FakeInstance("S1", "open_jam", str(i), frames=3) for i in (10, 2, 1)))
    assert [s.instance for s in discover(root).samples] == ["1", "2", "10"]


def test_a_digit_like_non_ascii_instance_name_sorts_as_a_name(make_root) -> None:
    # "²".isdigit() is True but int("²") fails: such a folder is just a name, after the numbers
    root = make_root("egornn", tuple(FakeInstance("S1", "open_jam", i, frames=3) for i in ("\u00b2", "2")))
    assert [s.instance for s in discover(root).samples] == ["2", "\u00b2"]


def test_layout_detection_and_its_errors(make_root, tmp_path: Path) -> None:
    assert detect_layout(make_root("course")) is COURSE
    assert detect_layout(make_root("egornn")) is EGORNN
    with pytest.raises(DataError, match="not found"):
        detect_layout(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no 'processed_frames2/' or 'frames/' folder"):
        detect_layout(tmp_path)
    with pytest.raises(DataError, match="unknown layout 'kinetics'"):
        detect_layout(tmp_path, "kinetics")
    (tmp_path / "labels.csv").write_text("video,user,label\n")
    with pytest.raises(DataError, match="a raw set\\? run `fpar prepare` on it first"):
        detect_layout(tmp_path)


def test_discovery_reports_broken_instances_by_path(make_root) -> None:
    root = make_root("course", (
        FakeInstance("S1", "open_jam", "1", flows=9, flows_y=7),
        FakeInstance("S1", "open_jam", "2"),
        FakeInstance("S1", "open_jam", "3"),
    ))
    shutil.rmtree(root / "flow_y_processed/S1/open_jam/2")
    for image in (root / "processed_frames2/S1/open_jam/3/rgb").iterdir():
        image.unlink()
    messages = {str(p) for p in discover(root).problems}
    assert messages == {
        f"{root}/flow_x_processed/S1/open_jam/1: flow x/y count mismatch: 9 x files, 7 y files",
        f"{root}/flow_y_processed/S1/open_jam/2: missing flow_y folder",
        f"{root}/flow_x_processed/S1/open_jam/2: flow x/y count mismatch: 9 x files, 0 y files",
        f"{root}/processed_frames2/S1/open_jam/3/rgb: no rgb files named like rgb0001.png",
    }


def _samples(spec: dict[str, dict[str, int]]) -> list[Sample]:
    """In-memory samples: user -> class -> instance count (splits need no files)."""
    return [Sample(user, label, str(i), frames=()) for user, classes in spec.items()
            for label, count in classes.items() for i in range(1, count + 1)]


def test_class_list_is_the_sorted_union_without_excluded_classes() -> None:
    samples = _samples({"S1": {"take_cup": 1, "put_tea": 1}, "S2": {"close_jam": 1}, "S3": {"open_jam": 2}})
    assert class_names(samples) == ["close_jam", "open_jam", "put_tea", "take_cup"]
    assert class_names(samples, exclude=["put_tea"]) == ["close_jam", "open_jam", "take_cup"]


SPLIT_SPEC = {user: {"open_jam": 5, "take_cup": 10, "close_jam": 1} for user in ("S1", "S2", "S3", "S4")}


@pytest.mark.parametrize("test_user", ["S1", "S2", "S3", "S4"])
def test_split_holds_out_the_test_user_and_a_stratified_validation_part(test_user: str) -> None:
    samples = _samples(SPLIT_SPEC)
    split = split_by_user(samples, test_user, val_fraction=0.2, seed=3)
    assert {s.user for s in split.test} == {test_user} and len(split.test) == 16
    assert test_user not in {s.user for s in split.train + split.val}
    train_ids, val_ids = {s.id for s in split.train}, {s.id for s in split.val}
    assert not train_ids & val_ids and len(train_ids | val_ids) == 48
    per_class = {label: sum(s.label == label for s in split.val) for label in SPLIT_SPEC["S1"]}
    assert per_class == {"open_jam": 3, "take_cup": 6, "close_jam": 1}  # 20% of 15, 30, 3, rounded
    assert split.selection == "val"
    assert [s.id for s in split_by_user(samples, test_user, seed=3).val] == [s.id for s in split.val]


def test_split_never_takes_a_class_s_last_training_instance() -> None:
    split = split_by_user(_samples({"S1": {"close_jam": 1}, "S2": {"close_jam": 1}}), "S2", val_fraction=0.9)
    assert [s.id for s in split.train] == ["S1/close_jam/1"] and split.val == []


def test_selection_test_validates_on_the_test_user() -> None:
    samples = _samples(SPLIT_SPEC)
    split = split_by_user(samples, "S2", selection="test")
    assert split.val == split.test and {s.user for s in split.val} == {"S2"}
    assert len(split.train) == 48


def test_split_errors_name_the_bad_value() -> None:
    samples = _samples(SPLIT_SPEC)
    with pytest.raises(DataError, match="test user 'S9' not found; users are S1, S2, S3, S4"):
        split_by_user(samples, "S9")
    with pytest.raises(DataError, match="selection"):
        split_by_user(samples, "S1", selection="train")


def test_numbering_gap_names_the_first_missing_file_in_the_layouts_numbering() -> None:
    """`fpar data check` reports gaps through `Layout`, which alone knows each layout's first number."""
    names = lambda *files: [Path(f) for f in files]  # noqa: E731
    assert COURSE.numbering_gap("rgb", names("rgb0001.png", "rgb0002.png")) is None
    assert COURSE.numbering_gap("rgb", names("rgb0001.png", "rgb0002.png", "rgb0005.png")) == "rgb0003.png is missing"
    assert COURSE.numbering_gap("flow_x", names("flow_x_00002.png", "flow_x_00004.png")) == "flow_x_00003.png is missing"
    assert EGORNN.numbering_gap("rgb", names("image_00000.jpg", "image_00002.jpg")) == "image_00001.jpg is missing"
    assert COURSE.numbering_gap("rgb", names("rgb0001.png", "rgb001.png", "rgb0002.png")) == "a number is repeated"
    assert COURSE.numbering_gap("mmaps", []) is None


def test_a_missing_map_takes_the_next_one_and_later_maps_keep_their_frames(make_root) -> None:
    # the course data's mmaps/ folders have gaps; by list index every map after a gap would move
    # to an earlier frame (rgb0004 -> map0006); by number only the gap is filled
    root = make_root("course", (FakeInstance("S1", "open_jam", "1", frames=10),))
    maps = root / "processed_frames2/S1/open_jam/1/mmaps"
    (maps / "map0004.png").unlink()
    (maps / "map0005.png").unlink()
    sample = discover(root).samples[0]
    assert len(sample.mmaps) == 8  # the files themselves, as `fpar data check` counts them
    named = [sample.mmap(position).name for position in range(12)]
    assert named == ["map0001.png", "map0002.png", "map0003.png", "map0006.png", "map0006.png", "map0006.png",
                     "map0007.png", "map0008.png", "map0009.png", "map0010.png", "map0010.png", "map0010.png"]
