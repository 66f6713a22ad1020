"""Reading torch files without ever running code from them.

Every file fpar reads with torch (checkpoints, backbone weights, Ego-RNN state dicts) goes through
`load_weights_only`: `torch.load(weights_only=True)` accepts tensors and plain data only, so a
pickle that tries to run code is refused instead of executed. A file without the header torch.save
writes (zip, or a binary pickle for old files) is refused before torch reads it, since torch would
take e.g. a CSV for a pickle that names a forbidden global; then torch's own failures (RuntimeError
for a truncated zip, UnpicklingError for forbidden objects) each become one CheckpointError
naming the file. A zip with compressed entries is refused too: torch.save stores every entry as
it is, while torch.load would inflate a deflated one to whatever size it claims (a 0.4 MB file
held a 400 MB tensor).
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fpar.errors import CheckpointError, one_line  # noqa: F401 (one_line: re-exported)


def load_weights_only(path: str | Path, what: str, map_location: str | torch.device = "cpu") -> Any:
    """The object stored in `path` (a `what`, for messages), or a CheckpointError saying why not."""
    path = Path(path)
    if path.is_dir():
        hint = next((f"; its {f.name}?" for f in (path / "best.pt", path / "last.pt") if f.is_file()), "")
        raise CheckpointError(f"{path}: a folder, not the {what} file{hint}")
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found")
    with path.open("rb") as file:
        head = file.read(2)
    if not head:
        raise CheckpointError(f"{path}: cannot read {what}; the file is empty")
    if not (head == b"PK" or head[:1] == b"\x80"):  # torch.save writes a zip; old torch a binary pickle
        raise CheckpointError(f"{path}: cannot read {what}; not a torch file (no zip or pickle header)")
    if head == b"PK":
        _refuse_compressed(path, what)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused as {what}: it holds Python objects other than tensors and plain data, "
            "and fpar never runs code from a file"
        ) from exc
    except Exception as exc:  # truncated zip, foreign format, empty file: all "unreadable" to a user
        raise CheckpointError(
            f"{path}: cannot read {what}; the file is truncated or not a torch file "
            f"({type(exc).__name__}: {one_line(exc)})"
        ) from exc


def _refuse_compressed(path: Path, what: str) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            packed = [entry.filename for entry in archive.infolist() if entry.compress_type != zipfile.ZIP_STORED]
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # torch.load says what is wrong with it
    if packed:
        raise CheckpointError(f"{path}: refused as {what}: {len(packed)} compressed entries ({packed[0]}, ...); "
                              "torch.save writes none, and a compressed entry can unpack to any size")


def load_state_dict(path: str | Path, what: str, map_location: str | torch.device = "cpu") -> dict[str, Tensor]:
    """A state dict (a mapping of names to tensors) read weights-only from `path`, a `what`."""
    path = Path(path)
    state = load_weights_only(path, what, map_location=map_location)
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a {what} (a mapping of names to tensors)")
    return state if isinstance(state, dict) else dict(state)  # a dict keeps torch's `_metadata`
