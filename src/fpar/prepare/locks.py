"""File locks that leave no file behind (`flock`, released by the kernel when a process dies).

A lock file may be removed by the holder that releases it last, so a finished root holds none.
Whoever opens it and then gets the lock checks that the path still names the file it locked;
if the holder removed it in between, it opens the new file and tries again.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fpar.errors import DataError


def acquire(path: Path, shared: bool = False, blocking: bool = True) -> int | None:
    """A file descriptor holding a lock on `path` (created if missing), or None when `blocking` is
    False and another process holds it."""
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DataError(f"{path}: cannot create a lock file ({exc.strerror or exc})") from exc
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            return fd
        os.close(fd)  # the previous holder removed it while we waited: lock the new one


def release(fd: int, path: Path, remove: bool = False) -> None:
    """Give a lock back; `remove` deletes its file first (safe: see the module doc)."""
    if remove:
        path.unlink(missing_ok=True)
    os.close(fd)


@contextmanager
def locked(path: Path, remove: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the block (waiting for it)."""
    fd = acquire(path)
    try:
        yield
    finally:
        release(fd, path, remove)


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold `path` for a whole run, with this process's PID in it; refuse (DataError naming the
    holder's PID) when a live process holds it. A dead holder's lock is free: the kernel let go."""
    fd = acquire(path, blocking=False)
    if fd is None:
        raise DataError(f"{path}: another `fpar prepare` (PID {holder(path)}) is running on this root and "
                        f"shard; wait for it to finish or stop it")
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    try:
        yield
    finally:
        release(fd, path, remove=True)


def holder(path: Path) -> str:
    """The PID written in a run lock ("unknown" while its holder has not written it yet)."""
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def wait_for(path: Path, timeout: float) -> int:
    """Exclusive lock on `path`, waiting at most `timeout` seconds (DataError after that)."""
    deadline = time.monotonic() + timeout
    while (fd := acquire(path, blocking=False)) is None:
        if time.monotonic() > deadline:
            raise DataError(f"{path}: processes of an earlier `fpar prepare` run still hold it after "
                            f"{timeout:.0f} s; stop them and try again")
        time.sleep(0.02)
    return fd
