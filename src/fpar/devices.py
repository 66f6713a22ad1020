"""Which torch device a run uses: one rule for training, evaluation and CAM."""

from __future__ import annotations

import torch

from fpar.errors import ConfigError


def resolve_device(name: str, key: str = "device") -> torch.device:
    """"auto": the GPU when there is one, else the CPU; otherwise the torch device named.

    A name torch does not know, or CUDA asked for where there is none, is a ConfigError naming `key`
    (the recipe key or CLI option the name came from).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"{key} {name!r}: not a device (auto, cpu, cuda, cuda:1, ...)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key} {name!r}: no CUDA device is available here")
    return device
