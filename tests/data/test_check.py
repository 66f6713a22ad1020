"""`fpar data check`: the summary of a clean root, each problem with its path, exit codes."""

from __future__ import annotations

import shutil
import sys

import pytest
from fake_layout import FakeInstance
from typer.testing import CliRunner

from fpar.cli import app, main
from fpar.data.check import check_root
from fpar.errors import ConfigError, DataError

runner = CliRunner()

BROKEN = (
    FakeInstance("S1", "open_jam", "1", frames=4),  # fewer than the 5 frames RGB needs (and 3 flows < L=5)
    FakeInstance("S1", "open_jam", "2", flows=9, flows_y=8),  # flow x/y mismatch
    FakeInstance("S1", "take_cup", "1"),  # gets a corrupt frame
    FakeInstance("S2", "take_cup", "1"),  # its flow_y folder is removed
    FakeInstance("S2", "take_cup", "2"),  # its frames are removed (empty instance)
    FakeInstance("S2", "take_cup", "3", maps=3),  # too few motion maps
)


def _break(root) -> None:
    (root / "processed_frames2/S1/take_cup/1/rgb/rgb0003.png").write_bytes(b"\x89PNG broken")
    shutil.rmtree(root / "flow_y_processed/S2/take_cup/1")
    for frame in (root / "processed_frames2/S2/take_cup/2/rgb").iterdir():
        frame.unlink()


def test_clean_root_has_no_problems_and_a_summary(make_root) -> None:
    root = make_root("course")
    report = check_root(root, frames=7, flow_stack=5)
    assert report.clean and report.images_read and report.discovery.layout.name == "course"
    result = runner.invoke(app, ["data", "check", str(root), "--strict"])
    assert result.exit_code == 0, result.output
    assert _table_rows(result.output) == [
        ["S1", "3", "4", "10/10/12", "9/9/11", "10/10/12", "-"],
        ["S2", "2", "3", "9/10/10", "8/9/9", "9/10/10", "-"],
        ["all", "3", "7", "9/10/12", "8/9/11", "9/10/12", "-"],
        # the splits: test user, train, val, test, test classes without training instances (put_tea excluded)
        ["S1", "3", "0", "3", "-"],
        ["S2", "3", "0", "3", "-"],
    ]
    assert "classes (2): open_jam, take_cup" in result.output and "excluded: put_tea" in result.output
    assert "no problems" in result.output


def _table_rows(output: str) -> list[list[str]]:
    """The body rows of every table in `output`, cells stripped."""
    rows = [line.split("│")[1:-1] for line in output.splitlines() if line.startswith("│")]
    return [[cell.strip() for cell in row] for row in rows]


def test_splits_list_every_held_out_user_or_the_one_asked(make_root) -> None:
    users = ("S1", "S2", "S3", "S4")
    root = make_root("egornn", tuple(FakeInstance(user, label, str(i), frames=8) for user in users
                                     for label in ("open_jam", "take_cup", "put_tea") for i in (1, 2, 3, 4, 5)))
    every = runner.invoke(app, ["data", "check", str(root), "--quick"], env={"COLUMNS": "200"})
    assert every.exit_code == 0, every.output
    # 10 instances per user once put_tea is out; 30 for training, 20% of each class (3 of 15) for validation
    assert _table_rows(every.output)[-4:] == [[user, "24", "6", "10", "-"] for user in users]
    one = runner.invoke(app, ["data", "check", str(root), "--quick", "--test-user", "S3", "--exclude", ""])
    assert _table_rows(one.output)[-1] == ["S3", "36", "9", "15", "-"]  # put_tea kept: 15 a user
    assert "classes (3): open_jam, put_tea, take_cup" in one.output and "excluded" not in one.output
    unknown = runner.invoke(app, ["data", "check", str(root), "--quick", "--test-user", "S9"])
    assert unknown.exit_code == 1 and "test user 'S9' not found; users are S1, S2, S3, S4" in str(unknown.exception)


def test_every_problem_names_its_path(make_root) -> None:
    root = make_root("course", BROKEN)
    _break(root)
    found = {str(p) for p in check_root(root, frames=7, flow_stack=5).problems}
    expected = {
        "processed_frames2/S1/open_jam/1/rgb: only 4 frames, fewer than 5 (the RGB datasets drop this",
        "flow_x_processed/S1/open_jam/1: only 3 flows, fewer than L=5",
        "flow_x_processed/S1/open_jam/2: flow x/y count mismatch: 9 x files, 8 y files",
        "processed_frames2/S1/take_cup/1/rgb/rgb0003.png: unreadable image",
        "flow_y_processed/S2/take_cup/1: missing flow_y folder",
        "processed_frames2/S2/take_cup/2/rgb: no rgb files named like rgb0001.png",
        "processed_frames2/S2/take_cup/3/mmaps: 3 motion maps for 10 frames (expected 9 or 10",
    }
    for text in expected:
        assert any(line.startswith(f"{root}/{text}") for line in found), (text, sorted(found))


def test_counts_that_break_the_position_alignment_are_problems(make_root) -> None:
    """Flow k goes from frame k to k+1 and positions run over sorted files: n-1 flows, no gaps."""
    root = make_root("egornn", (FakeInstance("S1", "open_jam", "1", flows=9),  # the clean count
                                FakeInstance("S1", "open_jam", "2", flows=10),  # one flow too many
                                FakeInstance("S1", "open_jam", "3")))  # gets a gap in its frame numbers
    (root / "frames/S1/open_jam/3/image_00004.jpg").unlink()
    found = sorted(str(p) for p in check_root(root, read_images=False).problems)
    assert found == [
        f"{root}/flow_x/S1/open_jam/2: 10 flows for 10 frames (expected 9: flow k goes from frame k to frame k+1)",
        f"{root}/flow_x/S1/open_jam/3: 9 flows for 9 frames (expected 8: flow k goes from frame k to frame k+1)",
        f"{root}/frames/S1/open_jam/3: rgb files are not numbered consecutively (image_00004.jpg is missing): "
        f"positions after the gap would misalign",
    ]


def test_problems_warn_and_strict_fails(make_root) -> None:
    root = make_root("course", BROKEN)
    _break(root)
    loose = runner.invoke(app, ["data", "check", str(root)])
    assert loose.exit_code == 0
    assert "warning:" in loose.output and "rgb0003.png: unreadable image" in loose.output
    assert "flow_y 1" in loose.output and "rgb 1" in loose.output  # missing modalities in the summary
    strict = runner.invoke(app, ["data", "check", str(root), "--strict"])
    assert strict.exit_code == 1


def test_strict_fails_through_the_console_script(make_root, monkeypatch) -> None:
    root = make_root("course", (FakeInstance("S1", "open_jam", frames=3),))
    monkeypatch.setattr(sys, "argv", ["fpar", "data", "check", str(root), "--strict", "--quick"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1


def test_quick_skips_decoding_and_frames_option_applies(make_root) -> None:
    root = make_root("egornn")
    (root / "frames/S1/open_jam/1/image_00003.jpg").write_bytes(b"")
    assert check_root(root, read_images=False).clean
    quick = runner.invoke(app, ["data", "check", str(root), "--quick", "--strict", "--frames", "11",
                                "--layout", "egornn"], env={"COLUMNS": "300"})
    assert "images not decoded" in quick.output
    # fewer frames than N is kept and sampled with repeats (Ego-RNN): a note, not a problem (exit 0 with
    # --strict); every listed instance but the 12-frame one, put_tea excluded
    assert quick.exit_code == 0, quick.output
    assert ("note: 5 instance(s) have fewer than N=11 frames (e.g. S1/open_jam/1: 10): their clips repeat "
            "frames, as in Ego-RNN") in quick.output
    assert "no problems (N=11, L=5; 2 note(s) above)" in quick.output  # and the empty-val note
    assert "note: 6 instance(s) have fewer than N=11" in runner.invoke(  # put_tea kept: counted
        app, ["data", "check", str(root), "--quick", "--frames", "11", "--exclude", ""], env={"COLUMNS": "300"}).output


def test_instances_of_five_frames_are_kept_and_four_reported(make_root) -> None:
    """Ego-RNN keeps instances of at least 5 frames, whatever N; shorter RGB clips are problems."""
    root = make_root("egornn", (FakeInstance("S1", "open_jam", "1", frames=5),
                                FakeInstance("S1", "open_jam", "2", frames=4)))
    found = [str(p) for p in check_root(root, frames=25, flow_stack=3, read_images=False).problems]
    assert found == [f"{root}/frames/S1/open_jam/2: only 4 frames, fewer than 5 "
                     f"(the RGB datasets drop this instance, as Ego-RNN does)"]


def test_help_has_an_example() -> None:
    result = runner.invoke(app, ["data", "check", "--help"])
    assert result.exit_code == 0 and "Example: fpar data check" in result.output


def test_a_root_without_instances_is_an_error_naming_it(make_root, tmp_path) -> None:
    empty = tmp_path / "empty"
    (empty / "processed_frames2").mkdir(parents=True)
    with pytest.raises(DataError, match="no instances found in the course layout") as info:
        check_root(empty)
    assert str(info.value).startswith(f"{empty}: ") and "looks like" not in str(info.value)
    course = make_root("course")
    wrong = runner.invoke(app, ["data", "check", str(course), "--layout", "egornn", "--quick"])
    assert wrong.exit_code == 1 and "instances" not in wrong.output  # no (empty) table printed
    message = str(wrong.exception)
    assert message.startswith(f"{course}: no instances found in the egornn layout") and "\n" not in message
    assert "this root looks like the course layout" in message


def test_an_empty_val_split_is_a_note_that_strict_ignores(make_root) -> None:
    """2 users x 2 instances per class: 20% of 2 rounds to 0, so val is empty for every user."""
    root = make_root("egornn", tuple(FakeInstance(user, label, str(i)) for user in ("S1", "S2")
                                     for label in ("open_jam", "take_cup") for i in (1, 2)))
    result = runner.invoke(app, ["data", "check", str(root), "--quick", "--strict"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert _table_rows(result.output)[-2:] == [["S1", "4", "0", "4", "-"], ["S2", "4", "0", "4", "-"]]
    assert ("note: val is empty for every held-out user: selection=val has nothing to choose a checkpoint on; "
            "raise val_fraction (now 0.2) or use selection=test") in result.output
    assert "no problems (N=7, L=5; 1 note(s) above)" in result.output
    one = runner.invoke(app, ["data", "check", str(root), "--quick", "--test-user", "S2"], env={"COLUMNS": "300"})
    assert "note: val is empty with S2 held out" in one.output
    # a split with validation instances has no note
    users = ("S1", "S2", "S3")
    roomy = make_root("egornn", tuple(FakeInstance(user, "open_jam", str(i)) for user in users for i in (1, 2, 3)))
    assert "note:" not in runner.invoke(app, ["data", "check", str(roomy), "--quick"]).output


@pytest.mark.parametrize("option", ["--frames", "--flow-stack"])
def test_frames_and_flow_stack_must_be_at_least_one(make_root, option: str) -> None:
    root = make_root("egornn")
    result = runner.invoke(app, ["data", "check", str(root), "--quick", option, "0"])
    assert result.exit_code == 1 and isinstance(result.exception, ConfigError)
    name = option.removeprefix("--").replace("-", "_")
    assert str(result.exception) == f"{name} must be at least 1, got 0" and "instances" not in result.output


def test_an_unknown_excluded_class_is_named_in_a_warning(make_root) -> None:
    root = make_root("egornn")
    result = runner.invoke(app, ["data", "check", str(root), "--quick", "--exclude", "put_tea,nosuch"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "warning: excluded class(es) not in this root: nosuch" in result.output
    assert "excluded: put_tea" in result.output
    # the default exclude (put_tea) is not warned about on a root without it
    no_tea = make_root("egornn", (FakeInstance("S1", "open_jam"), FakeInstance("S2", "open_jam")))
    assert "not in this root" not in runner.invoke(app, ["data", "check", str(no_tea), "--quick"]).output


def test_an_unknown_test_user_fails_before_the_summary(make_root) -> None:
    root = make_root("egornn")
    result = runner.invoke(app, ["data", "check", str(root), "--quick", "--test-user", "S9"])
    assert result.exit_code == 1 and "test user 'S9' not found; users are S1, S2" in str(result.exception)
    assert result.output == ""


def test_brackets_in_folder_names_print_as_they_are(make_root, tmp_path, monkeypatch, capsys) -> None:
    # rich would read "[/x]" as a closing tag (an exception) and "[bold]" as a style (a wrong path)
    root = make_root("course", instances=(FakeInstance("S1", "open_[red]jam", "[bold]1", frames=4),
                                          FakeInstance("S2", "take_[bold]cup", "1")))
    result = runner.invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 0 and result.exception is None, result.output
    assert "S1/open_[red]jam/[bold]1" in result.output, result.output
    assert "classes (2): open_[red]jam, take_[bold]cup" in result.output
    missing = tmp_path / "no[bold]root[/x]"
    monkeypatch.setattr(sys, "argv", ["fpar", "data", "check", str(missing)])
    with pytest.raises(SystemExit) as exit_info:
        main()  # the console script's error line
    assert exit_info.value.code == 1
    assert f"error: {missing}: dataset root not found" in capsys.readouterr().out


def test_files_that_links_take_outside_the_root_are_noted(make_root, tmp_path) -> None:
    # a root from someone else could link any image of this machine into its instances
    root = make_root("course", instances=(FakeInstance("S1", "open_jam", "1"), FakeInstance("S2", "take_cup", "1")))
    elsewhere = tmp_path / "elsewhere"
    frames = root / "processed_frames2/S2/take_cup/1/rgb"
    shutil.move(frames, elsewhere)
    frames.symlink_to(elsewhere)  # a folder link; a file link counts the same
    inside = root / "processed_frames2/S1/open_jam/1/rgb"
    (inside / "rgb0002.png").unlink()
    (inside / "rgb0002.png").symlink_to(inside / "rgb0001.png")  # a link within the root is not noted
    report = check_root(root, frames=7, flow_stack=5)
    assert report.clean  # a note, not a problem: roots linked together from several disks are common
    assert [(p.relative_to(root).as_posix(), t.parent) for p, t in report.outside] == [
        (f"processed_frames2/S2/take_cup/1/rgb/rgb{k:04d}.png", elsewhere.resolve()) for k in range(1, 11)]
    result = runner.invoke(app, ["data", "check", str(root)], terminal_width=400)
    assert "note: 10 file(s) lie outside the root through symbolic links (e.g. " in result.output


def test_a_gap_in_the_motion_maps_is_a_note_not_a_problem(make_root) -> None:
    # the course data has such gaps and its readers let the next map stand in (`Sample.mmap`)
    root = make_root("course", instances=(FakeInstance("S1", "open_jam", "1"), FakeInstance("S2", "take_cup", "1")))
    (root / "processed_frames2/S1/open_jam/1/mmaps/map0004.png").unlink()
    report = check_root(root, frames=7, flow_stack=5)
    assert report.clean, [str(p) for p in report.problems]  # neither a gap nor "9 motion maps for 10 frames"
    assert [(folder.relative_to(root).as_posix(), gap) for folder, gap in report.map_gaps] == [
        ("processed_frames2/S1/open_jam/1/mmaps", "map0004.png is missing")]
    result = runner.invoke(app, ["data", "check", str(root), "--strict"], terminal_width=400)
    assert result.exit_code == 0 and "note: 1 instance(s) have gaps in their motion maps" in result.output
