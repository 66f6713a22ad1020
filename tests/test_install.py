"""The installed environment is what pyproject.toml pins, with exactly one OpenCV in `cv2`."""

from __future__ import annotations

import importlib.metadata as metadata
import tomllib
from pathlib import Path

import cv2
import torch
import torchvision

import fpar

PYPROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())


def test_opencv_contrib_gives_optflow() -> None:
    """The flow code needs TV-L1 from `cv2.optflow`, which only the contrib build has."""
    assert hasattr(cv2, "optflow")
    assert callable(cv2.optflow.DualTVL1OpticalFlow_create)


def test_exactly_one_opencv_distribution() -> None:
    """Two OpenCV wheels (e.g. one pulled in by grad-cam) overwrite each other's `cv2` folder."""
    names = sorted({(dist.metadata["Name"] or "").lower() for dist in metadata.distributions()})
    opencv = [name for name in names if name.startswith("opencv")]
    assert opencv == ["opencv-contrib-python-headless"]


def test_torch_and_torchvision_are_the_pinned_releases() -> None:
    pins = dict(dep.split("==") for dep in PYPROJECT["project"]["dependencies"] if "==" in dep)
    assert torch.__version__.split("+")[0] == pins["torch"]
    assert torchvision.__version__.split("+")[0] == pins["torchvision"]


def test_package_version_matches_pyproject() -> None:
    assert fpar.__version__ == PYPROJECT["project"]["version"] == metadata.version("fpar")
