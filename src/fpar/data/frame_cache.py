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

The cache folder is trusted no more than a dataset: entries are read with ``allow_pickle=False``
and anything that is not a uint8 (1|3, H, W) array is decoded again and rewritten. A folder that
cannot be written (read-only, disk full) is warned about once per process and loading goes on
without caching.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fpar.errors import ConfigError

ENV_CACHE_DIR = "FPAR_CACHE_DIR"
OFF = "off"
AUTO = "auto"
FORMAT_VERSION = 1  # part of every key: bump it when what an entry holds changes
_SUBFOLDER = re.compile(r"[0-9a-f]{2}")
_FILE = re.compile(r"\.?[0-9a-f]{64}\.npy(\.\d+\.tmp)?")  # an entry, or a temporary one a killed writer left


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

    def load(self, source: Path, variant: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        """The entry for `source` resized as `variant` describes, made by `make` when absent or bad.

        `make` decodes and resizes (and raises the DataError naming `source` if it cannot); a
        source that cannot be stat'ed is left to it too.
        """
        try:
            stat = source.stat()
        except OSError:
            return make()
        identity = f"{FORMAT_VERSION}\0{os.path.abspath(source)}\0{stat.st_size}\0{stat.st_mtime_ns}\0{variant}"
        digest = hashlib.sha256(identity.encode()).hexdigest()
        entry = self.folder / digest[:2] / f"{digest}.npy"
        cached = _read_entry(entry)
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
        files = self.entries()
        return len(files), sum(path.stat().st_size for path in files)

    def clear(self) -> tuple[int, int]:
        """Delete what `entries` lists (and subfolders left empty); returns (files, bytes) removed."""
        files = self.entries()
        freed = 0
        for path in files:
            freed += path.stat().st_size
            path.unlink(missing_ok=True)
        for sub in {path.parent for path in files}:
            if not any(sub.iterdir()):
                sub.rmdir()
        return len(files), freed

    def _write_entry(self, entry: Path, image: np.ndarray) -> None:
        temp: Path | None = None
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            temp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
            with temp.open("wb") as handle:
                np.save(handle, np.ascontiguousarray(image), allow_pickle=False)
            os.replace(temp, entry)
        except OSError as exc:
            self._writable = False
            if temp is not None:
                temp.unlink(missing_ok=True)
            warnings.warn(f"frame cache {self.folder}: cannot write ({exc.strerror or exc}); "
                          "loading goes on without caching", stacklevel=3)


def _read_entry(entry: Path) -> np.ndarray | None:
    """The array in `entry`, or None when it is missing or not a uint8 (1|3, H, W) array."""
    try:
        array = np.load(entry, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[0] not in (1, 3) or 0 in array.shape:
        return None
    return array
