"""One device rule for training, evaluation and CAM."""

from __future__ import annotations

import pytest
import torch

from fpar.devices import resolve_device
from fpar.errors import ConfigError


def test_auto_picks_the_gpu_only_when_there_is_one() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_unknown_names_and_missing_cuda_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^train.device 'tpu9': not a device"):
        resolve_device("tpu9", "train.device")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"^--device 'cuda:0': no CUDA device"):
            resolve_device("cuda:0", "--device")
