"""Decoded, resized images kept on disk between epochs, so only the first epoch decodes PNGs.

Why: decoding is most of what a loader does (a profile of an `RGBClips` item at the demo size gives
two thirds of its time to PIL's PNG decoder), and every epoch decodes the same files again; the
reference code does the same. What follows the decode is split in two by `ClipTransform`: the
short-side resize, which is the same every epoch, and the random flip and crop, which are not. The
cache keeps the output of the first part, so a cached item equals an uncached one bit for bit.

An entry is one ``.npy`` file (uint8, (C, H, W)), named by a hash of the source file's absolute
path, size and modification time and of how it was resized: a changed or replaced image is read
afresh, and entries of other sizes (the demo's 128 and GTEA61's 256) live side by side. Entries
are written atomically (temporary file, then rename), so DataLoader workers and concurrent runs
can share one folder. RGB frames are drawn at fixed positions (`sampling.frame_positions`), so an
RGB dataset caches N frames per clip; flow windows are random, so a flow dataset ends up caching
every flow image it can draw. Size on disk: C x H x W bytes per entry (64 KB for a 170x128 RGB
frame, 256 KB at 256 px).

The cache folder is trusted no more than a dataset: an entry's .npy header is checked before its
pixels are read (uint8, the channels and short side the image would have, exactly that many
bytes), and anything else is decoded again and rewritten. A folder that cannot be written
(read-only, or less than 2 GiB free on its disk: the cache must not fill the disk checkpoints
go to) is warned about once per process and loading goes on without caching. `fpar data cache`
shows the size, `--clear` deletes the entries (only files named as the cache names them).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import warnings
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import numpy as np

from fpar.errors import ConfigError

ENV_CACHE_DIR = "FPAR_CACHE_DIR"
OFF = "off"
AUTO = "auto"
FORMAT_VERSION = 1  # part of every key: bump it when what an entry holds changes
_SUBFOLDER = re.compile(r"[0-9a-f]{2}")
_FILE = re.compile(r"\.?[0-9a-f]{64}\.npy(\.\d+-[0-9a-f]{8}\.tmp)?")  # an entry, or a killed writer's temporary one
MIN_FREE_BYTES = 2 * 2**30  # below this much free space on its disk the cache stops writing


def default_folder() -> Path:
    """``$FPAR_CACHE_DIR/frames``, else ``$XDG_CACHE_HOME/fpar/frames``, else ``~/.cache/fpar/frames``."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]) / "frames"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fpar" / "frames"


class FrameCache:
    """Resized uint8 images on disk under `folder`, keyed by their source file and their resize."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._writable = True

    @classmethod
    def from_setting(cls, setting: str) -> FrameCache | None:
        """`data.frame_cache`: "auto" (`default_folder`), "off" (None), or a folder."""
        if not setting:
            raise ConfigError(f'data.frame_cache must be "{AUTO}", "{OFF}" or a folder, got an empty string')
        if setting == OFF:
            return None
        return cls(default_folder() if setting == AUTO else Path(setting).expanduser())

    def load(self, source: Path, variant: str, make: Callable[[], np.ndarray], channels: int,
             short_side: int) -> np.ndarray:
        """The entry for `source` resized as `variant` describes, made by `make` when absent or bad.

        `make` decodes and resizes (and raises the DataError naming `source` if it cannot); a
        source that cannot be stat'ed is left to it too. An entry is used only if it holds what
        `make` would: uint8 (`channels`, H, W) with min(H, W) = `short_side`.
        """
        try:
            stat = source.stat()
        except OSError:
            return make()
        identity = f"{FORMAT_VERSION}\0{os.path.abspath(source)}\0{stat.st_size}\0{stat.st_mtime_ns}\0{variant}"
        digest = hashlib.sha256(identity.encode()).hexdigest()
        entry = self.folder / digest[:2] / f"{digest}.npy"
        cached = _read_entry(entry, channels, short_side)
        if cached is not None:
            return cached
        image = make()
        if self._writable:
            self._write_entry(entry, image)
        return image

    def entries(self) -> list[Path]:
        """Every file this cache wrote under `folder` (entries and temporary leftovers), nothing else:
        `clear` must never delete a file of a folder the user pointed here by mistake."""
        if not self.folder.is_dir():
            return []
        return [path for sub in self.folder.iterdir() if sub.is_dir() and _SUBFOLDER.fullmatch(sub.name)
                for path in sub.iterdir() if path.is_file() and _FILE.fullmatch(path.name)]

    def size(self) -> tuple[int, int]:
        """(number of files, bytes) held."""
        files = [(path, _size(path)) for path in self.entries()]
        return len(files), sum(size for _, size in files)

    def clear(self) -> tuple[int, int]:
        """Delete what `entries` lists (and subfolders left empty); returns (files, bytes) removed.
        Safe beside a run that is writing: a file gone meanwhile is skipped, and a writer whose
        temporary file disappears just leaves that image uncached."""
        files = self.entries()
        freed = 0
        for path in files:
            freed += _size(path)
            path.unlink(missing_ok=True)
        for sub in {path.parent for path in files}:
            with suppress(OSError):  # not empty: a writer put a file there meanwhile
                sub.rmdir()
        return len(files), freed

    def _write_entry(self, entry: Path, image: np.ndarray) -> None:
        """Write `entry` atomically; stop caching (one warning) where the folder cannot be written
        or its disk is nearly full: a cache must never fill the disk that checkpoints go to."""
        temp = entry.with_name(f".{entry.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:  # a folder that cannot be made (even with ENOENT, as under /proc) stops the cache
            entry.parent.mkdir(parents=True, exist_ok=True)
            if shutil.disk_usage(self.folder).free < MIN_FREE_BYTES:  # `clear` never removes the folder itself
                raise OSError(errno.ENOSPC, f"less than {MIN_FREE_BYTES // 2**30} GiB free")
        except OSError as exc:
            self._stop(exc)
            return
        try:
            with temp.open("wb") as handle:
                np.save(handle, np.ascontiguousarray(image), allow_pickle=False)
            os.replace(temp, entry)
        except FileNotFoundError:  # `clear` removed the subfolder or the temporary file meanwhile
            _remove(temp)
        except OSError as exc:
            _remove(temp)
            self._stop(exc)

    def _stop(self, exc: OSError) -> None:
        self._writable = False
        warnings.warn(f"frame cache {self.folder}: cannot write ({exc.strerror or exc}); "
                      "loading goes on without caching", stacklevel=4)


def _remove(path: Path) -> None:
    with suppress(OSError):
        path.unlink()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # removed meanwhile (a writer's rename, another clear)
        return 0


def _read_entry(entry: Path, channels: int, short_side: int) -> np.ndarray | None:
    """The array in `entry`, or None when it is missing or anything but a .npy file holding uint8
    (`channels`, H, W) with min(H, W) = `short_side` and exactly that many bytes.

    The header is checked before any pixel is read, so a crafted entry can neither allocate a
    huge array nor hand over another kind of file (np.load would open a zip archive)."""
    try:
        with entry.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                return None
            shape, fortran, dtype = read_header(handle)
            if (dtype != np.uint8 or fortran or len(shape) != 3 or shape[0] != channels
                    or min(shape[1:]) != short_side):
                return None
            count = shape[0] * shape[1] * shape[2]
            if os.fstat(handle.fileno()).st_size - handle.tell() != count:
                return None
            return np.fromfile(handle, dtype=np.uint8, count=count).reshape(shape)
    except Exception:  # noqa: BLE001 - an unreadable or malformed entry is a miss, whatever the reason
        return None
