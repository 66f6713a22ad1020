"""A killed `fpar prepare` (SIGKILL of the main process alone, or of its whole group), rerun at once,
gives the same root, byte for byte, as a run never interrupted; a second run on the same root and
shard is refused; the workers die with their parent.

TV-L1 flow keeps each video busy for a second or two at 64x48, so a kill lands mid-run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prepare_helpers import files_of, render, write_video
from fpar.data.layout import MANIFEST_JOURNAL_NAME, RUN_LOCK_NAME

pytestmark = pytest.mark.slow
ARGS = ["--size", "64x48", "--flow", "tvl1", "--workers", "2"]
FINISHED = {"flow_x_processed", "flow_y_processed", "processed_frames2", "manifest.csv", "prepare.json"}


@pytest.fixture(scope="module")
def kill_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four videos of 10 frames, one of them holding two segments."""
    folder = tmp_path_factory.mktemp("kill_raw")
    rows = ["video,user,label,start,end"]
    for i in range(4):
        write_video(folder / f"v{i}.mp4", render(10, seed=i)[0])
        rows.append(f"v{i}.mp4,S{i % 2 + 1},take_cup,,")
    rows.append("v0.mp4,S1,put_cup,2,7")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def _start(raw: Path, root: Path, new_session: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fpar.cli", "prepare", "--videos", str(raw / "labels.csv"),
                             "--out", str(root), *ARGS], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=new_session)


def _finish(raw: Path, root: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "fpar.cli", "prepare", "--videos", str(raw / "labels.csv"),
                             "--out", str(root), *ARGS], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def clean(kill_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("clean") / "root"
    _finish(kill_raw, root)
    assert {p.name for p in root.iterdir()} == FINISHED  # no lock, journal, work folder or temp file
    return files_of(root)


def _wait_for(condition, what: str, timeout: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _journal_lines(root: Path) -> int:
    try:
        return (root / MANIFEST_JOURNAL_NAME).read_text().count("\n")
    except FileNotFoundError:
        return 0


def _workers(parent: int) -> list[int]:
    """PIDs of the multiprocessing workers whose parent is `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent and b"spawn_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper does not count)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the workers")
def test_kill_of_the_main_process_alone_kills_its_workers_and_a_rerun_gives_the_clean_files(
        kill_raw: Path, clean: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "root"
    run = _start(kill_raw, root)
    _wait_for(lambda: _journal_lines(root) >= 1, "the first finished sample")
    workers = _workers(run.pid)
    assert len(workers) == 2
    os.kill(run.pid, signal.SIGKILL)  # the main process alone
    run.wait()
    time.sleep(0.5)  # a video takes seconds: a worker that outlived its parent would still be at work
    assert [pid for pid in workers if _alive(pid)] == []
    assert _journal_lines(root) < 5  # it was killed mid-run
    _finish(kill_raw, root)  # at once
    assert files_of(root) == clean


def test_kill_of_the_whole_group_and_a_rerun_gives_the_clean_files(kill_raw: Path, clean: dict[str, str],
                                                                   tmp_path: Path) -> None:
    root = tmp_path / "root"
    run = _start(kill_raw, root, new_session=True)
    _wait_for(lambda: _journal_lines(root) >= 2, "two finished samples")
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert _journal_lines(root) < 5
    output = _finish(kill_raw, root)
    assert "already complete" in output and " 0 already complete" not in output  # it resumed
    assert files_of(root) == clean


def test_a_second_run_on_the_same_root_and_shard_is_refused_naming_the_holder(kill_raw: Path, tmp_path: Path,
                                                                             clean: dict[str, str]) -> None:
    root = tmp_path / "root"
    run = _start(kill_raw, root)
    lock = root / RUN_LOCK_NAME.format(shard="1of1")
    _wait_for(lambda: lock.is_file() and lock.read_text().strip() == str(run.pid), "the run lock")
    second = subprocess.run([sys.executable, "-m", "fpar.cli", "prepare", "--videos", str(kill_raw / "labels.csv"),
                             "--out", str(root), *ARGS], capture_output=True, text=True, timeout=300)
    output = second.stdout + second.stderr
    assert second.returncode == 1 and "Traceback" not in output, output
    assert f"another `fpar prepare` (PID {run.pid}) is running on this root and shard" in " ".join(output.split())
    assert run.wait(timeout=300) == 0, run.stdout.read()
    assert files_of(root) == clean  # the refused run changed nothing


def test_a_lock_left_by_a_dead_process_is_taken_over(kill_raw: Path, clean: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "root"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    root.mkdir()
    (root / RUN_LOCK_NAME.format(shard="1of1")).write_text(dead.stdout)
    _finish(kill_raw, root)
    assert files_of(root) == clean
