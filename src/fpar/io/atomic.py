"""Files written whole or not at all: write a temporary file beside the target, fsync, rename.

A reader (or a run resumed after `kill -9`) sees either the old file or the new one, never half of
one. Every file that must not be half-written goes through here: the manifest, prepare's settings,
quality.json, checkpoints, the trainer's metrics and state.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from fpar.errors import DataError, one_line


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on a clean exit it is fsynced and renamed onto `path`.

    On an error the temporary file is removed and `path` is left as it was. Temporary names start
    with `.` and end in `.tmp`, so a killed writer's leftovers are easy to find and clean.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise DataError(f"{path}: cannot write: {one_line(exc.strerror or str(exc))}") from exc
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        with temp.open("rb+") as written:
            os.fsync(written.fileno())
        os.replace(temp, path)
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        full = _disk_full(exc)
        if full is not None:
            raise DataError(f"{path}: cannot write: {full.strerror} {free_space(path.parent)}; "
                            "free some space and run the same command again") from exc
        if isinstance(exc, OSError) and str(exc.filename) in (str(temp), str(path)):  # e.g. `path` is a folder
            raise DataError(f"{path}: cannot write: {one_line(exc.strerror or str(exc))}") from exc
        raise
    _fsync_dir(path.parent)


def write_atomic(path: str | Path, data: str | bytes | Callable[[IO[Any]], None]) -> Path:
    """Write text, bytes, or whatever `data(handle)` writes to a binary handle, atomically."""
    with atomic_path(path) as temp:
        if callable(data):
            with temp.open("wb") as handle:
                data(handle)
        elif isinstance(data, bytes):
            temp.write_bytes(data)
        else:
            temp.write_text(data, encoding="utf-8")
    return Path(path)


def free_space(folder: Path) -> str:
    """"(N MiB free there)": what a message about a failed write adds, so a full disk is plain.

    Measured on the nearest folder that exists (the write may have failed for want of `folder`).
    """
    existing = next((f for f in (folder, *folder.parents) if f.is_dir()), Path("."))
    return f"({shutil.disk_usage(existing).free / 2**20:,.0f} MiB free there)"


def _disk_full(exc: BaseException) -> OSError | None:
    """The out-of-space error behind `exc`, if any.

    torch.save turns a failed write into a RuntimeError ("unexpected pos 704 vs 598") raised while
    it closes the archive; the OSError that says why is only on the exception's context chain.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
