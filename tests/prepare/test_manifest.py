"""The manifest store: an update costs one appended line at any size, shared safely by processes,
and a broken manifest is one line naming the file from every verb that reads it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cli_kit import run_cli
from fpar.data.layout import MANIFEST_COLUMNS, MANIFEST_JOURNAL_NAME, MANIFEST_LOCK_NAME, MANIFEST_NAME, read_manifest
from fpar.errors import DataError
from fpar.prepare.manifest import ManifestStore
from fpar.prepare.settings import parse_shard


def _row(i: int, status: str = "ok") -> dict[str, str]:
    row = dict.fromkeys(MANIFEST_COLUMNS, "")
    row.update(user=f"S{i % 4}", **{"class": "take_cup"}, instance=str(i), frames="8", flows="7", status=status,
               video=f"v{i}.mp4", start="0")
    return row


def test_10000_updates_one_by_one_append_a_line_each_and_never_rewrite_the_manifest(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    for i in range(10_000):  # the bookkeeping of a 10,000-sample run, one sample at a time
        store.record([_row(i)])
    store.fold()
    assert len(read_manifest(tmp_path)) == 10_000
    before = (tmp_path / MANIFEST_NAME).stat()
    store.record([_row(3, status="failed")])
    after = (tmp_path / MANIFEST_NAME).stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert (tmp_path / MANIFEST_JOURNAL_NAME).read_text().count("\n") == 1
    assert store.rows()["S3", "take_cup", "3"]["status"] == "failed"
    store.fold()
    assert read_manifest(tmp_path)["S3", "take_cup", "3"]["status"] == "failed"
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME]  # no journal, no lock file


def test_removed_rows_leave_the_manifest_and_a_line_cut_short_is_ignored(tmp_path: Path) -> None:
    store = ManifestStore(tmp_path)
    store.record([_row(1), _row(2)])
    store.remove([_row(1)])
    with (tmp_path / MANIFEST_JOURNAL_NAME).open("a") as journal:
        journal.write("S9,take_cup,9,8,7,o")  # a writer killed mid-line
    assert list(store.rows()) == [("S2", "take_cup", "2")]
    store.fold()
    assert list(read_manifest(tmp_path)) == [("S2", "take_cup", "2")]


WRITER = textwrap.dedent("""
    import sys
    from fpar.data.layout import MANIFEST_COLUMNS
    from fpar.prepare.manifest import ManifestStore
    store, who = ManifestStore(sys.argv[1]), sys.argv[2]
    for i in range(150):
        row = dict.fromkeys(MANIFEST_COLUMNS, "")
        row.update(user=who, instance=str(i), status="ok", **{"class": "c"})
        store.record([row])
        if i % 5 == 0:
            store.fold()
""")


def test_processes_sharing_one_manifest_lose_no_row(tmp_path: Path) -> None:
    """Folding (read, rewrite, drop the journal) races appends unless both hold the lock."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), who], env=env) for who in ("A", "B", "C")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0]
    ManifestStore(tmp_path).fold()
    assert len(read_manifest(tmp_path)) == 450


@pytest.mark.parametrize("damage", ["non-UTF-8 byte", "extra field", "short header"])
@pytest.mark.parametrize("verb", ["prepare", "data check"])
def test_a_broken_manifest_is_one_line_naming_it_from_every_verb(raw: Path, tmp_path: Path, capsys,
                                                                 damage: str, verb: str) -> None:
    root = tmp_path / "root"
    assert run_cli(["prepare", "--videos", str(raw / "labels.csv"), "--out", str(root), "--size", "64x48",
                    "--workers", "1"], capsys)[0] == 0
    manifest = root / MANIFEST_NAME
    lines = manifest.read_bytes().splitlines(keepends=True)
    if damage == "non-UTF-8 byte":
        lines[2] = lines[2].replace(b"take_cup", b"take_c\xffp")
        expected = f"{manifest}: not UTF-8 text (byte 0xff at offset"
    elif damage == "extra field":
        lines[3] = lines[3].rstrip(b"\n") + b",surplus\n"
        expected = f"{manifest}:4: expected {len(MANIFEST_COLUMNS)} fields"
    else:
        lines[0] = b"user,class\n"
        expected = f"{manifest}:1: header must be"
    manifest.write_bytes(b"".join(lines))
    args = (["prepare", "--videos", str(raw / "labels.csv"), "--out", str(root), "--size", "64x48", "--workers", "1"]
            if verb == "prepare" else ["data", "check", str(root)])
    code, output = run_cli(args, capsys)
    assert code == 1 and "Traceback" not in output, output
    assert expected in " ".join(output.split())
    assert [line for line in output.splitlines() if line.strip()] == [output.strip().splitlines()[0]]  # one line


@pytest.mark.parametrize("text", ["0/2", "3/2", "a/2", "1", "\u00b2/4"])  # "²".isdigit() is True, int("²") fails
def test_a_bad_shard_is_one_data_error(text: str) -> None:
    with pytest.raises(DataError, match=re.escape(f"shard must be K/N with 1 <= K <= N, got {text!r}")):
        parse_shard(text)


def test_a_shard_is_k_of_n_from_one() -> None:
    assert parse_shard("2/4") == (1, 4)
