"""Atomic writes: the target is whole or untouched, and no temporary file is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

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
