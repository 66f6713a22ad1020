"""Atomic writes: the target is whole or untouched, and no temporary file is left behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from fpar.errors import DataError
from fpar.io.atomic import write_atomic


def test_writes_text_bytes_and_callables(tmp_path: Path) -> None:
    write_atomic(tmp_path / "a.txt", "héllo\n")
    write_atomic(tmp_path / "b.bin", b"\x00\x01")
    write_atomic(tmp_path / "sub" / "c.bin", lambda handle: handle.write(b"xyz"))
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "sub" / "c.bin").read_bytes() == b"xyz"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.txt", "b.bin", "c.bin"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "manifest.csv"
    target.write_text("old\n")

    def half_then_fail(handle) -> None:
        handle.write(b"new, half written")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.csv"]


class _FullDisk:
    """A binary handle on a disk that fills after `room` bytes, as a real one raises."""

    def __init__(self, handle, room: int) -> None:
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        if self.room < len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def test_a_full_disk_under_torch_save_is_one_line_naming_the_file(tmp_path: Path) -> None:
    # torch.save reports a full disk as "unexpected pos ..." while closing the archive; the user is
    # told the file, the cause and the free space instead, and the old checkpoint stays whole
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")
    with pytest.raises(DataError, match=r"last\.pt: cannot write: No space left on device \(.* MiB free there\)"):
        write_atomic(target, lambda handle: torch.save({"w": torch.zeros(100_000)}, _FullDisk(handle, 4096)))
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_target_that_is_a_folder_is_one_line_and_the_folder_stays(tmp_path: Path) -> None:
    (tmp_path / "out.pt").mkdir()
    with pytest.raises(DataError, match=r"out\.pt: cannot write: Is a directory"):
        write_atomic(tmp_path / "out.pt", b"weights")
    assert (tmp_path / "out.pt").is_dir() and [p.name for p in tmp_path.iterdir()] == ["out.pt"]


def test_an_error_reading_another_file_is_not_blamed_on_the_target(tmp_path: Path) -> None:
    def copy_missing(handle) -> None:
        handle.write((tmp_path / "missing.pt").read_bytes())

    with pytest.raises(FileNotFoundError, match="missing.pt"):
        write_atomic(tmp_path / "best.pt", copy_missing)
    assert list(tmp_path.iterdir()) == []
