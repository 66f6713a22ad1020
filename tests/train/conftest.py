"""Helpers of the training tests: tiny overrides and a recipe writer (the prepared root and the one-thread
rule are tests/conftest.py's)."""

from __future__ import annotations

from pathlib import Path


# Small everywhere: N=3 frames at 48x48 (layer4 2x2), an 8-channel ConvLSTM, batches of 4.
TINY = ["data.frames=3", "data.flow_stack=2", "data.image_size=48", "data.batch_size=4", "data.workers=0",
        "model.mem_size=8"]


def stage_yaml(name: str, trains: list[str], epochs: int = 1, extra: str = "") -> str:
    """One stage of a recipe as YAML list item text."""
    return f"  - name: {name}\n    trains: [{', '.join(trains)}]\n    epochs: {epochs}\n{extra}"


def write_recipe(folder: Path, model: str, stages: list[str], name: str = "recipe.yaml") -> Path:
    """A recipe file for `model` with the given stage texts (data.root comes as an override)."""
    path = folder / name
    path.write_text(f"model:\n  name: {model}\nstages:\n{''.join(stages)}")
    return path
