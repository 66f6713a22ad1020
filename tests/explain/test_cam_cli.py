"""`fpar cam` user errors through the real entry point: one line naming the file, exit 1, no traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cam_testkit import tiny
from cli_kit import run_cli

from fpar.models import save_checkpoint

# name -> (arguments after the checkpoint and the input, what the one line must contain)
CASES = {
    "text checkpoint": ("notes.pt", "video", [], "notes.pt: cannot read checkpoint"),
    "image named .mp4": ("rgb.pt", "still.mp4", [], "still.mp4: this is a PNG image named like a video"),
    "bad --flow-size": ("flow.pt", "video", ["--flow-size", "abc"], "size 'abc': expected WIDTHxHEIGHT"),
    "folder as input": ("rgb.pt", "folder", [], "folder: is a folder, not an image or a video"),
}


@pytest.mark.parametrize("case", CASES)
def test_cam_error_is_one_line_naming_the_file(case: str, tmp_path: Path, video: Path, capsys) -> None:  # noqa: ANN001
    for name in ("rgb", "flow"):
        save_checkpoint(tmp_path / f"{name}.pt", *tiny(name))
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    shutil.copy(Path(__file__).parents[2] / "docs" / "cam_sheet.png", tmp_path / "still.mp4")
    (tmp_path / "folder").mkdir()
    checkpoint, source, extra, message = CASES[case]
    source_path = video if source == "video" else tmp_path / source
    code, output = run_cli(["cam", str(tmp_path / checkpoint), str(source_path), "--out",
                            str(tmp_path / "cam.mp4"), *extra], capsys)
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 1 and "Traceback" not in output, output
    assert len(lines) == 1 and lines[0].startswith("error: "), output  # no progress bar drawn before the error
    assert message in " ".join(output.split()), output
