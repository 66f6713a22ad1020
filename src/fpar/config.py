"""Typed configuration: dataclasses loaded from YAML with `key=value` overrides.

OmegaConf structured configs give us type checking for free: an unknown key or a value of the
wrong type is an error naming the key, never a silent default (nanoGPT's rule). A recipe is one
YAML file with the sections `data`, `model`, `train` and `stages`; nothing inherits from anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fpar.errors import ConfigError


@dataclass
class DataConfig:
    """Where the data is, how it is split, and how clips are sampled."""

    root: str = ""
    layout: str = "auto"  # "auto", "course" (with motion maps) or "egornn"
    test_user: str = "S2"  # the held-out user (the reference holds out S2)
    val_fraction: float = 0.2  # stratified share of the training users' instances kept for validation
    selection: str = "val"  # "val": choose checkpoints on the validation part; "test": the reference protocol
    frames: int = 7  # N, RGB frames per clip (Ego-RNN uses 25, the seed 7)
    flow_stack: int = 5  # L, consecutive flow frames per stack
    image_size: int = 224  # side of the square crop fed to the network
    resize: int = 256  # short side before cropping (Ego-RNN: 256 for a 224 crop)
    exclude_classes: list[str] = field(default_factory=lambda: ["put_tea"])
    batch_size: int = 32
    workers: int = 2


@dataclass
class ModelConfig:
    """Which registered model to build and its options (see `fpar.models.registry`)."""

    name: str = "rgb"  # flow | rgb | two_stream | rgb_ms | rgb_ms_feedback
    num_classes: int = 61
    frames: int = 7  # N
    flow_stack: int = 5  # L: the flow stream's conv1 takes 2L channels
    image_size: int = 224
    weights: str = "none"  # "none", "imagenet", or a path to a local ResNet-34 state dict
    mem_size: int = 512  # ConvLSTM channels
    ms_variant: str = "classification"  # MS head: "classification" (2 per position) or "regression"
    feedback_mode: str = "two_pass"  # "two_pass" or "previous_frame"


@dataclass
class StageConfig:
    """One training stage: which parameter groups train, for how long, and how."""

    name: str = "stage1"
    trains: list[str] = field(default_factory=list)  # parameter groups, e.g. ["lstm", "classifier"]
    epochs: int = 1
    optimizer: str = "adam"  # "adam" or "sgd"
    lr: float = 1e-3
    weight_decay: float = 4e-5
    momentum: float = 0.9
    eps: float = 1e-4
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    init_from: list[str] = field(default_factory=list)  # other runs' checkpoints, loaded non-strictly


@dataclass
class TrainConfig:
    """Settings of the loop that hold across stages."""

    seed: int = 0
    device: str = "auto"
    alpha: float = 1.0  # weight of L_ms in L_tot = L_cls + alpha * L_ms
    amp: bool = False
    channels_last: bool = False
    compile: bool = False


@dataclass
class Recipe:
    """A whole experiment: data, model, loop settings and the list of stages."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    stages: list[StageConfig] = field(default_factory=list)


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe from YAML (or start from defaults) and apply `section.key=value` overrides.

    Raises ConfigError naming the file or the override when a key is unknown or a type is wrong.
    """
    schema = OmegaConf.structured(Recipe)
    try:
        merged = schema
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise ConfigError(f"{path}: recipe file not found")
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
        if overrides:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as exc:
        where = f"{path}" if path is not None else "overrides"
        raise ConfigError(f"{where}: {_one_line(exc)}") from exc
    recipe = OmegaConf.to_object(merged)
    assert isinstance(recipe, Recipe)
    return recipe


def to_dict(config: Any) -> dict[str, Any]:
    """A plain dict of a config dataclass, for checkpoints and run dirs (YAML/JSON safe)."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)  # type: ignore[return-value]


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Rebuild a config dataclass from `to_dict`'s output, with the same checks as a recipe."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), values))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{cls.__name__}: {_one_line(exc)}") from exc


def _one_line(exc: OmegaConfBaseException) -> str:
    """OmegaConf's message without its multi-line type dump, prefixed by the offending key."""
    message = str(getattr(exc, "msg", exc)).splitlines()[0]
    key = getattr(exc, "full_key", None)
    return f"{key}: {message}" if key else message
