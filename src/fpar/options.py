"""Parsing of command-line option values shared by every verb and by the library.

Kept free of heavy imports (no torch, av, cv2, numpy): `fpar --help` imports it.
A bad value raises ConfigError naming the option value and what was expected.
"""

from __future__ import annotations

import os
import re

from fpar.errors import ConfigError

Size = tuple[int, int]  # (width, height)

# `fpar prepare`'s defaults (PrepareSettings and the flow quantisation use these), kept here so the
# CLI's help shows them without importing OpenCV or PyAV.
FLOW_METHODS = ("dis", "tvl1", "farneback")
DEFAULT_FLOW = "dis"
DEFAULT_BOUND = 20.0
DEFAULT_FRAME_SIZE: Size = (320, 240)


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity: a container's or a job's share, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def parse_size(text: str, allow_native: bool = False) -> Size | None:
    """``"320x240"`` -> (320, 240); with `allow_native`, ``"native"`` -> None (keep each video's size)."""
    if allow_native and text.strip().lower() == "native":
        return None
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise ConfigError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 320x240"
                          + (", or native" if allow_native else ""))
    return int(match.group(1)), int(match.group(2))


def format_size(size: Size | None) -> str:
    """(320, 240) -> "320x240"; None -> "native"."""
    return "native" if size is None else f"{size[0]}x{size[1]}"


def parse_list(text: str) -> list[str]:
    """``"S1, S2"`` -> ["S1", "S2"] (empty items dropped, so "" is the empty list)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def check_flow_method(method: str) -> str:
    """`method` if it is a dense flow method fpar knows, else ConfigError listing them."""
    if method not in FLOW_METHODS:
        raise ConfigError(f"unknown flow method {method!r}; choose one of {', '.join(FLOW_METHODS)}")
    return method
