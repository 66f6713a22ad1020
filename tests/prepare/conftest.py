"""The raw test set of tests/prepare: tiny H.264 clips made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from prepare_helpers import render, write_video


@pytest.fixture(scope="session")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A labels.csv with three clips of two users and one long video holding two segments."""
    folder = tmp_path_factory.mktemp("raw")
    (folder / "videos").mkdir()
    for name, n, seed in (("a", 6, 0), ("b", 5, 1), ("c", 5, 2), ("long", 14, 3)):
        write_video(folder / "videos" / f"{name}.mp4", render(n, seed=seed)[0])
    (folder / "labels.csv").write_text(
        "video,user,label,start,end\n"
        "videos/a.mp4,S1,take_cup,,\n"
        "videos/b.mp4,S1,take_cup,,\n"
        "videos/c.mp4,S2,put_cup,,\n"
        "videos/long.mp4,S2,take_cup,0,5\n"
        "videos/long.mp4,S2,put_cup,7,13\n")
    return folder
