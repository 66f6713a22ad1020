"""`fpar data check`: the summary of a clean root, each problem with its path, exit codes."""

from __future__ import annotations

import shutil
import sys

import pytest
from fake_layout import FakeInstance
from typer.testing import CliRunner

from fpar.cli import app, main
from fpar.data.check import check_root

runner = CliRunner()

BROKEN = (
    FakeInstance("S1", "open_jam", "1", frames=4),  # fewer frames than N=7 (and 3 flows < L=5)
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
    rows = [line.split("│")[1:-1] for line in result.output.splitlines() if line.startswith("│")]
    assert [[cell.strip() for cell in row] for row in rows] == [
        ["S1", "3", "4", "10/10/12", "9/9/11", "10/10/12", "-"],
        ["S2", "2", "3", "9/10/10", "8/9/9", "9/10/10", "-"],
        ["all", "3", "7", "9/10/12", "8/9/11", "9/10/12", "-"],
    ]
    assert "classes (3): open_jam, put_tea, take_cup" in result.output and "no problems" in result.output


def test_every_problem_names_its_path(make_root) -> None:
    root = make_root("course", BROKEN)
    _break(root)
    found = {str(p) for p in check_root(root, frames=7, flow_stack=5).problems}
    expected = {
        "processed_frames2/S1/open_jam/1/rgb: only 4 frames, fewer than N=7",
        "flow_x_processed/S1/open_jam/1: only 3 flows, fewer than L=5",
        "flow_x_processed/S1/open_jam/2: flow x/y count mismatch: 9 x files, 8 y files",
        "processed_frames2/S1/take_cup/1/rgb/rgb0003.png: unreadable image",
        "flow_y_processed/S2/take_cup/1: missing flow_y folder",
        "processed_frames2/S2/take_cup/2/rgb: no rgb files named like rgb0001.png",
        "processed_frames2/S2/take_cup/3/mmaps: 3 motion maps for 10 frames (expected 9 or 10",
    }
    for text in expected:
        assert any(line.startswith(f"{root}/{text}") for line in found), (text, sorted(found))


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
    quick = runner.invoke(app, ["data", "check", str(root), "--quick", "--frames", "11", "--layout", "egornn"])
    assert "images not decoded" in quick.output
    assert quick.output.count("fewer than N=11") == 6  # every instance but the 12-frame one


def test_help_has_an_example() -> None:
    result = runner.invoke(app, ["data", "check", "--help"])
    assert result.exit_code == 0 and "Example: fpar data check" in result.output
